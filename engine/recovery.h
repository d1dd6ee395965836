/*
** recovery.h -- rebuilding the indexes and the segment states from the
** data files when an engine opens (recovery.c has the rules).
**
** Layer: catalog -> recovery -> txn (engine/README.md).  Calls: catalog,
** segment, format, index.
*/
#ifndef LS_RECOVERY_H
#define LS_RECOVERY_H

#include "catalog.h"

/* Rebuild the indexes and segment states from the data files.  The mixed
** segments that hold live records, oldest first, the group segments whose
** buffer can be settled, and the empty segments that need a free marker
** before they are freed are left in *mixed, *settle and *empties for the
** cleaner. */
int recover(ls_engine *e, seg_ids *mixed, seg_ids *settle, seg_ids *empties);

#endif
