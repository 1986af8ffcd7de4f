#!/bin/sh
# libexmem-preload.so's dynamic symbol table: the exmem.h API, exmem_dropin,
# and the interposed functions of libsodium and OpenSSL, all unversioned.
#   exports_test.sh NM LIBRARY EXMEM_H DROPIN_H
# The exmem API is read from the headers (every EXMEM_API function), so that
# the list cannot fall behind them.
set -u
nm=$1 lib=$2 exmem_h=$3 dropin_h=$4
api=$(cat "$exmem_h" "$dropin_h" | tr '\n' ' ' | grep -o 'EXMEM_API [^(]*[ *]exmem_[a-z_]*(' |
  grep -o 'exmem_[a-z_]*(' | tr -d '(')
[ -n "$api" ] || { echo "FAIL: no EXMEM_API declaration found in $exmem_h or $dropin_h"; exit 1; }
expected="$api CRYPTO_secure_actual_size CRYPTO_secure_allocated CRYPTO_secure_clear_free CRYPTO_secure_free
CRYPTO_secure_malloc CRYPTO_secure_malloc_done CRYPTO_secure_malloc_init CRYPTO_secure_malloc_initialized
CRYPTO_secure_used CRYPTO_secure_zalloc sodium_allocarray sodium_free
sodium_malloc sodium_mprotect_noaccess sodium_mprotect_readonly sodium_mprotect_readwrite"
got=$("$nm" -D --defined-only "$lib" | awk '$2 ~ /^[TWi]$/ {print $3}' | sort | tr '\n' ' ')
want=$(echo $expected | tr ' ' '\n' | sort | tr '\n' ' ')
if [ "$got" != "$want" ]; then
  echo "FAIL: exported functions differ"; echo " got: $got"; echo "want: $want"; exit 1
fi
"$nm" -D --defined-only "$lib" | grep -q '@' && { echo "FAIL: versioned definitions"; exit 1; }
echo "exports: ok"
