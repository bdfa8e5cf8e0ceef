# shellcheck shell=bash
# For images built `FROM scratch`: a binary runs there only with the shared libraries it loads.

# Copies into ROOTFS, at their host paths, the shared libraries (and the loader) that each
# BINARY loads, as ldd finds them, and lists them in SHARED_LIBRARIES; fails naming any
# library this host lacks.
copy_shared_libraries() { # ROOTFS BINARY...
  local rootfs=$1 bin lib
  shift
  local libs=()
  for bin in "$@"; do
    if ldd "$bin" | grep -q 'not found'; then
      echo "image: $bin needs a library this host lacks:" >&2
      ldd "$bin" | grep 'not found' >&2
      return 1
    fi
    # "libx.so => /path (addr)" and the loader "/lib64/ld-linux-x86-64.so.2 (addr)".
    while read -r lib; do libs+=("$lib"); done < <(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
  done
  mapfile -t SHARED_LIBRARIES < <(printf '%s\n' "${libs[@]}" | sort -u)
  for lib in "${SHARED_LIBRARIES[@]}"; do
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
  done
}
