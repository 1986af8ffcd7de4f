#!/bin/sh
# libexmem-preload.so's dynamic symbol table: the exmem.h API, exmem_dropin,
# and the interposed functions of libsodium and OpenSSL, all unversioned.
#   exports_test.sh NM LIBRARY
set -u
nm=$1 lib=$2
expected="CRYPTO_secure_actual_size CRYPTO_secure_allocated CRYPTO_secure_clear_free CRYPTO_secure_free
CRYPTO_secure_malloc CRYPTO_secure_malloc_done CRYPTO_secure_malloc_init CRYPTO_secure_malloc_initialized
CRYPTO_secure_used CRYPTO_secure_zalloc exmem_alloc exmem_calloc exmem_dropin exmem_free exmem_init
exmem_last_error exmem_last_error_message exmem_protection exmem_realloc exmem_share_create exmem_share_recv
exmem_share_release exmem_share_send exmem_stats exmem_strerror exmem_usable_size sodium_allocarray sodium_free
sodium_malloc sodium_mprotect_noaccess sodium_mprotect_readonly sodium_mprotect_readwrite"
got=$("$nm" -D --defined-only "$lib" | awk '$2 ~ /^[TWi]$/ {print $3}' | sort | tr '\n' ' ')
want=$(echo $expected | tr ' ' '\n' | sort | tr '\n' ' ')
if [ "$got" != "$want" ]; then
  echo "FAIL: exported functions differ"; echo " got: $got"; echo "want: $want"; exit 1
fi
"$nm" -D --defined-only "$lib" | grep -q '@' && { echo "FAIL: versioned definitions"; exit 1; }
echo "exports: ok"
