# Copy the newest verified dump in BACKUP_DIR to S3-compatible storage.
#
# Runs after the dump (its init container) succeeded, in the aws-cli image, with
# the backup volume mounted read-only. Only files with the final dump name are
# considered, so an unverified or partial dump is never uploaded. An S3 object
# appears only once its upload completed, and the size is checked afterwards.
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
dumps=("$dir"/sentry-[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]Z.sql.gz)
shopt -u nullglob
if ((${#dumps[@]} == 0)); then
  echo "offsite: no dump in $dir to copy" >&2
  exit 1
fi
file="${dumps[${#dumps[@]} - 1]}" # names carry the UTC time stamp: the last is the newest
name="$(basename "$file")"
size="$(wc -c <"$file")"
target="s3://$bucket/$prefix$name"

echo "offsite: copying $name ($size bytes) to $target ${S3_ENDPOINT_URL:+via $S3_ENDPOINT_URL}"
aws ${endpoint[@]+"${endpoint[@]}"} s3 cp --only-show-errors --no-progress "$file" "$target"
stored="$(aws ${endpoint[@]+"${endpoint[@]}"} s3api head-object --bucket "$bucket" --key "$prefix$name" \
  --query ContentLength --output text)"
if [[ $stored != "$size" ]]; then
  echo "offsite: FAILED: $target has $stored bytes, the dump has $size" >&2
  exit 1
fi
echo "offsite: done: $target ($stored bytes)"
