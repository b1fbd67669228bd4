#!/usr/bin/env bash
# Stages the storage backends the GPU machine cannot install (no network, no registry; Ubuntu 24.04
# without RocksDB, hiredis or Redis) from this machine's Debian packages into a git-ignored folder
# that a device run carries (about 17 MB), so the GPU build there has the embedded default's
# persistent tier and the Redis Cluster tier, and its tests can start Redis:
#   include/rocksdb/, include/hiredis/   the headers hps builds against
#   lib/librocksdb.so.<soname>, lib/libhiredis.so.<soname>
#                                        the libraries, named by their sonames, with the libraries
#                                        they need that a stock Ubuntu lacks (snappy, gflags, lzf,
#                                        jemalloc); scripts/gpu_check.sh adds the unversioned links
#                                        the linker looks for and puts lib/ on LD_LIBRARY_PATH
#   bin/redis-server, bin/redis-cli      for the tests' own clusters (put on PATH there)
#   MANIFEST                             the Debian packages and versions they came from
#
# Usage: scripts/stage_storage_for_gpu.sh [DEST]     (default .device/storage; run after
#        scripts/setup.sh --test, which installs librocksdb-dev, libhiredis-dev and redis-server)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DEST=${1:-.device/storage}
die() { echo "stage_storage_for_gpu: $*" >&2; exit 1; }

git check-ignore -q "$DEST/x" || die "$DEST is not git-ignored: stage into .device/ (see .gitignore)"
command -v dpkg-query >/dev/null || die "dpkg-query not found: this script stages Debian's packages"
for package in librocksdb-dev libhiredis-dev redis-server redis-tools; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
    die "$package is not installed (scripts/setup.sh --test installs it)"
done

# Libraries every Ubuntu 24.04 with gcc, Python and systemd has (the GPU machine's system): not
# carried, so the system's own, newer builds stay in use.
present_there='^(linux-vdso|ld-linux-x86-64|libc|libm|libdl|librt|libpthread|libgcc_s|libstdc\+\+|libatomic|libz|libbz2|liblz4|libzstd|liblzma|libssl|libcrypto|libsystemd|libcap|libgcrypt|libgpg-error)\.so'

rm -rf "$DEST.part"
mkdir -p "$DEST.part/include" "$DEST.part/lib" "$DEST.part/bin"

# copy_library PATH: the library under its soname, plus what it needs that the GPU machine lacks.
copy_library() {
  local path soname dep
  path=$(readlink -f "$1")
  soname=$(objdump -p "$path" | awk '$1 == "SONAME" {print $2}')
  [[ -n "$soname" ]] || die "$path has no SONAME"
  [[ -f "$DEST.part/lib/$soname" ]] && return 0
  cp "$path" "$DEST.part/lib/$soname"
  carry_needed "$path"
}

# carry_needed FILE: the shared libraries FILE loads that the GPU machine lacks.
carry_needed() {
  local name where
  while read -r name _ where _; do
    [[ "$name" =~ $present_there ]] && continue
    [[ -n "$where" && -f "$where" ]] || die "$1 needs $name, which is not found here"
    copy_library "$where"
  done < <(ldd "$1" | grep "=>")
}

cp -r /usr/include/rocksdb "$DEST.part/include/"
cp -r /usr/include/hiredis "$DEST.part/include/"
arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
copy_library "/usr/lib/$arch/librocksdb.so"
copy_library "/usr/lib/$arch/libhiredis.so"
# redis-server is a link to redis-check-rdb (one binary that acts by its name): carried as a file.
cp "$(readlink -f "$(command -v redis-server)")" "$DEST.part/bin/redis-server"
cp "$(readlink -f "$(command -v redis-cli)")" "$DEST.part/bin/redis-cli"
carry_needed "$DEST.part/bin/redis-server"
carry_needed "$DEST.part/bin/redis-cli"

# Nothing carried may need a newer C library than Ubuntu 24.04's (2.39).
newest=$(objdump -T "$DEST.part"/lib/* "$DEST.part"/bin/* | grep -o 'GLIBC_[0-9.]*' | sort -V | tail -1)
[[ "$(printf '%s\n' "$newest" GLIBC_2.39 | sort -V | tail -1)" == GLIBC_2.39 ]] ||
  die "the staged files need $newest, newer than the GPU machine's glibc 2.39"

dpkg-query -W -f='${Package} ${Version}\n' librocksdb-dev libhiredis-dev redis-server redis-tools \
  libsnappy1v5 libgflags2.2 liblzf1 libjemalloc2 >"$DEST.part/MANIFEST" 2>/dev/null || true
rm -rf "$DEST"
mv "$DEST.part" "$DEST"
echo "stage_storage_for_gpu: staged in $DEST ($(du -sh "$DEST" | cut -f1)):"
ls "$DEST/lib" "$DEST/bin" | sed 's/^/  /'
