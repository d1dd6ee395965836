/*
** read.h -- the read path: point reads, batched reads, reads through a
** transaction and cursors (the public ls_get* / ls_txn_get / ls_cursor_*
** calls), and the verified read of one record that the writer and the
** consistency check share.
**
** Layer: txn -> read -> cleaner (engine/README.md).  Calls: txn, catalog,
** segment, index, guard, io.
*/
#ifndef LS_READ_H
#define LS_READ_H

#include "txn.h"

/* Read and verify the record at word for table into v (from the record
** cache when it holds it, cache.h): its CRC with the
** segment's seed, its size, table and type, and with k its key (else
** LS_CORRUPT).  The caller is inside the guard.  LS_OK, LS_CORRUPT,
** LS_IOERR. */
int read_record(ls_engine *e, uint64_t word, uint32_t table, const ls_key *k, ls_value *v);

/* The same, always from disk and without caching what it reads (the
** consistency check verifies the bytes on disk). */
int read_record_disk(ls_engine *e, uint64_t word, uint32_t table, const ls_key *k, ls_value *v);

#endif
