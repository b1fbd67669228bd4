# Sourced by the A/B scripts (scripts/gpu_kernels_ab.sh, scripts/gpu_call_ab.sh), after they set ROOT:
# the --prepare step, which unpacks an older revision to build beside this tree, and their output
# folder.

# ab_prepare SCRIPT FOLDER REV [PATH...]: unpacks REV (only the PATHs, when given) into
# $ROOT/build/FOLDER/REV (git-ignored), says what to carry to the GPU machine, and exits.
ab_prepare() {
  local script=$1 folder=$2 rev=${3:?usage: scripts/$1 --prepare REV}
  shift 3
  local dest="$ROOT/build/$folder/$rev"
  rm -rf "$dest" && mkdir -p "$dest"
  git -C "$ROOT" archive "$rev" "$@" | tar -x -C "$dest" || exit 1
  echo "$dest (carry build/$folder/$rev)"
  exit 0
}

# ab_out_dir DIR: creates DIR and prints it as an absolute path (each side's commands run from the
# side's own tree, where a relative path would name another folder).
ab_out_dir() { mkdir -p "$1" && (cd "$1" && pwd); }
