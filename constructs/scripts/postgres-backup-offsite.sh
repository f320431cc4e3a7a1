# Copy the newest verified backup (a directory, see postgres-backup.sh) in BACKUP_DIR
# to S3-compatible storage, one object per file under PREFIX/sentry-.../.
#
# Runs after the dump (its init container) succeeded, in the aws-cli image, with
# the backup volume mounted read-only. Only directories with the final backup name
# are considered, so an unverified or partial backup is never uploaded. An S3 object
# appears only once its upload completed; every object's size is checked afterwards.
#
# Environment: BACKUP_DIR, S3_BUCKET, S3_PREFIX, S3_ENDPOINT_URL (empty for AWS),
# and the aws CLI's own AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (from the
# Secret), AWS_DEFAULT_REGION. Old objects are not deleted here: give the bucket a
# lifecycle rule (and versioning or object lock, if the copy must survive a
# compromised cluster).
# The aws-cli image is Amazon Linux 2, whose bash is 4.2: no negative array
# subscripts, and "${empty[@]}" counts as unset under `set -u`.
set -euo pipefail

dir="${BACKUP_DIR:?BACKUP_DIR is required}"
bucket="${S3_BUCKET:?S3_BUCKET is required}"
prefix="${S3_PREFIX:-}"
endpoint=()
[[ -z ${S3_ENDPOINT_URL:-} ]] || endpoint=(--endpoint-url "$S3_ENDPOINT_URL")

shopt -s nullglob
backups=("$dir"/sentry-[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]Z)
shopt -u nullglob
if ((${#backups[@]} == 0)); then
  echo "offsite: no backup in $dir to copy" >&2
  exit 1
fi
backup="${backups[${#backups[@]} - 1]}" # names carry the UTC time stamp: the last is the newest
name="$(basename "$backup")"
target="s3://$bucket/$prefix$name/"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$backup" && find . -type f -printf '%P %s\n' | sort) >"$work/local"

echo "offsite: copying $name ($(wc -l <"$work/local") files, $(du -sk "$backup" | cut -f1) KiB) to $target ${S3_ENDPOINT_URL:+via $S3_ENDPOINT_URL}"
# MD5SUMS goes last: a copy that has it is complete (and can be checked with md5sum -c).
aws ${endpoint[@]+"${endpoint[@]}"} s3 cp --recursive --only-show-errors --no-progress --exclude MD5SUMS \
  "$backup" "$target"
aws ${endpoint[@]+"${endpoint[@]}"} s3 cp --only-show-errors --no-progress "$backup/MD5SUMS" "${target}MD5SUMS"
aws ${endpoint[@]+"${endpoint[@]}"} s3api list-objects-v2 --bucket "$bucket" --prefix "$prefix$name/" \
  --query 'Contents[].[Key,Size]' --output text | sed "s|^$prefix$name/||" | tr '\t' ' ' | sort >"$work/remote"
if ! cmp -s "$work/local" "$work/remote"; then
  echo "offsite: FAILED: the objects under $target differ from $backup (name size; < local, > stored):" >&2
  diff "$work/local" "$work/remote" >&2 || true
  exit 1
fi
echo "offsite: done: $target ($(wc -l <"$work/remote") objects, sizes match)"
