/*
** hash.c -- key digests and tokens.
**
** A key's digest is RIPEMD-160 of its bytes (libgcrypt).  Its token is the
** first 8 bytes of the digest read as a signed big-endian integer: scans
** return rows in ascending token order.
**
** libgcrypt must be initialised (gcry_check_version) before any other call
** and before other threads use it.  ls_hash_init() does that once under
** pthread_once, and only when the host program has not initialised the
** library itself.
*/
#include "ls_int.h"

#include <gcrypt.h>
#include <pthread.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;

static void init(void) {
  if (!gcry_control(GCRYCTL_INITIALIZATION_FINISHED_P)) {
    gcry_check_version(NULL);
    gcry_control(GCRYCTL_DISABLE_SECMEM, 0);
    gcry_control(GCRYCTL_INITIALIZATION_FINISHED, 0);
  }
}

void ls_hash_init(void) { pthread_once(&once, init); }

void ls_digest(const void *data, size_t len, uint8_t out[20]) {
  pthread_once(&once, init);
  gcry_md_hash_buffer(GCRY_MD_RMD160, out, data, len);
}

void ls_key_set(ls_key *k, const void *data, uint32_t len) {
  k->data = data;
  k->len = len;
  ls_digest(data, len, k->digest);
}

int64_t ls_key_token(const ls_key *k) { return (int64_t)ls_getbe64(k->digest); }

int64_t ls_token_of(const void *data, uint32_t len) {
  uint8_t d[20];
  ls_digest(data, len, d);
  return (int64_t)ls_getbe64(d);
}
