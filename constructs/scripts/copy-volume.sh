# Copy a volume's files into another (empty) volume, and prove the copy before exiting 0:
# the list of every file with its MD5 checksum must be the same on both sides. Used by the
# volume moves of docs/operations.md (tools/volume_copy.py makes the Job): the backups
# move through a temporary claim and back, so a copy that lost or changed a byte must fail
# loudly, before the original is deleted. The volume's own lost+found is left out.
set -euo pipefail
from="${FROM_DIR:?FROM_DIR is required}"
to="${TO_DIR:?TO_DIR is required}"
[[ -d $from ]] || { echo "copy: $from is not a directory" >&2; exit 1; }
[[ -d $to ]] || { echo "copy: $to is not a directory" >&2; exit 1; }
shopt -s dotglob nullglob
for entry in "$to"/*; do
  if [[ $entry != "$to/lost+found" ]]; then
    echo "copy: $to is not empty: refusing to mix two volumes' files (nothing was copied)" >&2
    exit 1
  fi
done
listing() {
  (cd "$1" && find . -path ./lost+found -prune -o -type f -print0 | sort -z | xargs -0 -r md5sum)
}
started=$SECONDS
for entry in "$from"/*; do
  [[ $entry == "$from/lost+found" ]] || cp -a "$entry" "$to"/
done
source_list=$(listing "$from")
copy_list=$(listing "$to")
if [[ $source_list != "$copy_list" ]]; then
  echo "copy: FAILED: the copy in $to differs from $from (- the original, + the copy):" >&2
  diff <(printf '%s\n' "$source_list") <(printf '%s\n' "$copy_list") >&2 || true
  exit 1
fi
files=$(grep -c . <<<"$source_list" || true)
echo "copy: copied $files files from $from to $to in $((SECONDS - started))s; every checksum matches"
