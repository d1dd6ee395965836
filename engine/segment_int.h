/*
** segment_int.h -- what segment.c and datafile.c share inside the segment
** manager (segment.h is what other modules call).  Each takes m->lock
** held, except seg_add_descriptors (the growing thread, alone).
*/
#ifndef LS_SEGMENT_INT_H
#define LS_SEGMENT_INT_H

#include "segment.h"

/* Append id to the free FIFO.  LS_OK or LS_NOMEM. */
int seg_freeq_push(ls_segmgr *m, uint32_t id);
/* Descriptors for data file `file`, all FREE.  LS_OK or LS_NOMEM. */
int seg_add_descriptors(ls_segmgr *m, uint32_t file);
/* Size the reserve for the segments in existence ("Reserve"). */
void seg_set_reserve(ls_segmgr *m);
/* Free segments an allocation for purpose (SEG_FOR_*) must leave. */
uint32_t seg_keep_free(const ls_segmgr *m, int purpose);
/* May the store grow (disk_size and the id space allow more segments)? */
int seg_can_grow(ls_segmgr *m);

#endif
