#!/usr/bin/env bash
# make e2e: prove the stack on a real minikube (or kind), end to end, and print a verdict.
#
# Starts minikube as the README does (plus a profile of its own), or with --kind a kind
# cluster with Calico, builds the login image into it, synthesizes dist/ and applies it,
# waits with bounded timeouts, then checks:
#   login            the form at /auth/login/sentry/, then an authenticated API call
#   event            an event through the store API shows up in the events API:
#                    web -> Redis -> worker -> PostgreSQL
#   zero-downtime    web and worker are rolled out while a loop requests /_health/ and the
#                    login page; any error or refused connection fails
#   backup-restore   a Job from the backup CronJob writes a verified dump, the
#                    restore runbook restores it in place; login and the event survive
#   network-policies from a pod in another namespace PostgreSQL and Redis are unreachable,
#                    the web port is reachable
# and tears the cluster down unless --keep. Exit status 0 only if every check passed.
#
# The HTTP steps are tools/e2e_http.py (python3, standard library only). The admin
# password goes from the Secret to Python through the environment, never argv or output.
set -euo pipefail
root="$(cd "${BASH_SOURCE[0]%/*}/.." && pwd)"
cd "$root"

usage() {
  printf '%s\n' \
    "usage: tools/e2e.sh [--kind] [--keep] [--profile NAME] [--config FILE] [--skip-image]" \
    "" \
    "  --kind          a kind cluster instead of minikube: no default CNI, Calico installed, the" \
    "                  web NodePort mapped to 127.0.0.1 (E2E_CALICO_MANIFEST overrides the URL)" \
    "  --keep          leave the cluster (and the deployment) running afterwards" \
    "  --profile NAME  minikube profile or kind cluster name (default: sentry-e2e); an existing" \
    "                  one is reused, and then only the namespaces are deleted at the end" \
    "  --config FILE   values file to deploy (default: config/minikube.yaml)" \
    "  --skip-image    do not build images/sentry-auth into the cluster" \
    "" \
    "Needs minikube (or kind), kubectl, Docker, python3 and make, and a set-up project (make setup)." \
    "Timeouts in seconds, from the environment: E2E_START_TIMEOUT (900: minikube's --wait-timeout), E2E_IMAGE_TIMEOUT (1800)," \
    "E2E_DEPLOY_TIMEOUT (3600: pulls and migrations), E2E_ROLLOUT_TIMEOUT (900), E2E_EVENT_TIMEOUT (300)," \
    "E2E_JOB_TIMEOUT (1200: backup and restore Jobs), E2E_SETTLE_SECONDS (10: requests before and after the rollout)."
}

profile=sentry-e2e
cluster=minikube
config=config/minikube.yaml
keep=0
skip_image=0
while (($#)); do
  case $1 in
    --keep) keep=1 ;;
    --kind) cluster=kind ;;
    --profile) profile="${2:?--profile needs a name}"; shift ;;
    --config) config="${2:?--config needs a file}"; shift ;;
    --skip-image) skip_image=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "e2e: unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

start_timeout="${E2E_START_TIMEOUT:-900}"
image_timeout="${E2E_IMAGE_TIMEOUT:-1800}"
deploy_timeout="${E2E_DEPLOY_TIMEOUT:-3600}"
rollout_timeout="${E2E_ROLLOUT_TIMEOUT:-900}"
event_timeout="${E2E_EVENT_TIMEOUT:-300}"
job_timeout="${E2E_JOB_TIMEOUT:-1200}"
calico_manifest="${E2E_CALICO_MANIFEST:-https://raw.githubusercontent.com/projectcalico/calico/v3.28.2/manifests/calico.yaml}"
settle="${E2E_SETTLE_SECONDS:-10}" # requests before and after the rollout, as a baseline

# Everything that is missing, in one message, before anything is started.
missing=()
for tool in "$cluster" kubectl docker python3 make base64 timeout mktemp; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
  echo "e2e: not found on PATH: ${missing[*]}" >&2
  echo "e2e: install them (README: Prerequisites) and run again" >&2
  exit 1
fi
[[ -x .venv/bin/python ]] || { echo "e2e: the project is not set up: run make setup first" >&2; exit 1; }
[[ -f $config ]] || { echo "e2e: no values file $config" >&2; exit 1; }

values="$(.venv/bin/python tools/e2e_values.py show "$config")" || { echo "e2e: cannot read $config" >&2; exit 1; }
work="$(mktemp -d "${TMPDIR:-/tmp}/sentry-e2e.XXXXXX")"
# The apply record of this throwaway cluster stays with the run, not in the project's .state/.
export SENTRY_K8S_STATE_DIR="$work/state"
value() { sed -n "s/^$1=//p" <<<"$values"; }
ns="$(value namespace)"
release="$(value release)"
admin_email="$(value admin_email)"
secret_name="$(value secret_name)"
auth_image="$(value auth_image)"
postgres_image="$(value postgres_image)"
node_port="$(value node_port)"
probe_ns="$ns-e2e-probe"
url=""
admin_pw=""
existed=0
touched_cluster=0
bg_pids=()

# kubectl on this cluster's context only, so another current context is never touched.
context="$profile"
[[ $cluster == minikube ]] || context="kind-$profile"
kc() { kubectl --context "$context" "$@"; }
k() { kubectl --context "$context" -n "$ns" "$@"; }
log() { printf '\n==> %s\n' "$*"; }
http() { E2E_ADMIN_PASSWORD="$admin_pw" python3 tools/e2e_http.py "$@"; }

# ---------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------
names=()
states=()
details=()
record() { names+=("$1"); states+=("$2"); details+=("$3"); }
state_of() {
  local i
  for i in "${!names[@]}"; do [[ ${names[$i]} == "$1" ]] && { echo "${states[$i]}"; return; }; done
  echo NONE
}

# run_check NAME FUNCTION [PREREQUISITE...]: a check runs only if its prerequisites passed.
# The function sets $detail and returns non-zero on failure. Bash ignores `set -e` inside
# a function called as a condition, so the check functions test every step explicitly.
run_check() {
  local name=$1 func=$2 pre
  shift 2
  for pre in "$@"; do
    if [[ $(state_of "$pre") != PASS ]]; then
      record "$name" SKIP "needs $pre"
      return 0
    fi
  done
  log "$name"
  detail=""
  if "$func"; then
    record "$name" PASS "$detail"
  else
    record "$name" FAIL "$detail"
    echo "e2e: $name FAILED: $detail" >&2
  fi
}

summary() {
  local i failed=0
  printf '\n%-18s %-6s %s\n' CHECK RESULT DETAIL
  printf '%-18s %-6s %s\n' ------------------ ------ ------
  for i in "${!names[@]}"; do
    printf '%-18s %-6s %s\n' "${names[$i]}" "${states[$i]}" "${details[$i]}"
    [[ ${states[$i]} != FAIL ]] || failed=1
  done
  for name in cluster deploy login event zero-downtime backup-restore network-policies; do
    [[ $(state_of "$name") == PASS ]] || failed=1
  done
  if ((failed)); then echo "e2e: FAILED"; else echo "e2e: all checks passed"; fi
  return "$failed"
}

# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------

# Events and the logs of every pod that is neither Ready nor Succeeded.
diagnose() {
  echo "---- diagnostics for namespace $ns ----" >&2
  k get pods -o wide >&2 || true
  k get events --sort-by=.lastTimestamp 2>/dev/null | tail -n 40 >&2 || true
  local pod
  for pod in $(k get pods -o jsonpath='{range .items[*]}{.metadata.name} {.status.phase} {.status.containerStatuses[*].ready}{"\n"}{end}' 2>/dev/null |
    awk '$2 != "Succeeded" && ($2 != "Running" || / false/) {print $1}'); do
    echo "---- pod $pod ----" >&2
    k describe pod "$pod" 2>&1 | tail -n 25 >&2 || true
    k logs "$pod" --all-containers --prefix --tail=80 >&2 || true
    k logs "$pod" --all-containers --prefix --previous --tail=40 >&2 2>/dev/null || true
  done
}

# wait_job NAME SECONDS: until the Job is Complete (0) or Failed / out of time (1).
wait_job() {
  local deadline=$((SECONDS + $2)) conditions
  while ((SECONDS < deadline)); do
    conditions="$(k get job "$1" -o jsonpath='{range .status.conditions[?(@.status=="True")]}{.type} {end}' 2>/dev/null || true)"
    case " $conditions" in
      *" Complete "*) return 0 ;;
      *" Failed "*) echo "e2e: job $1 failed" >&2; return 1 ;;
    esac
    sleep 5
  done
  echo "e2e: job $1 did not finish within $2s" >&2
  return 1
}

# wait_gone SELECTOR SECONDS: until no pod matches.
wait_gone() {
  local deadline=$((SECONDS + $2))
  while ((SECONDS < deadline)); do
    [[ -z $(k get pods -l "$1" -o name 2>/dev/null) ]] && return 0
    sleep 3
  done
  return 1
}

# The documented apply, on this cluster's context only.
apply_dist() { make --no-print-directory apply ARGS="--context $context"; }

rollouts() {
  local d
  for d in "$@"; do
    k rollout status "deployment/$release-$d" --timeout="${rollout_timeout}s" || return 1
  done
}

# The pods of these components that are not on their way out: a worker keeps running
# for up to its grace period (300 s) after a rollout has finished.
pods_of() {
  k get pods -l "app.kubernetes.io/instance=$release,app.kubernetes.io/component in ($1)" \
    -o jsonpath='{range .items[*]}{.metadata.name} {.metadata.deletionTimestamp}{"\n"}{end}' |
    awk 'NF == 1 {print $1}' | sort
}

# ---------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------

check_cluster() {
  "${cluster}_start" || return 1
  kc -n kube-system rollout status daemonset/calico-node --timeout=600s ||
    { detail+="calico-node is not ready"; return 1; }
  detail+="$cluster, Kubernetes $(kc version -o json 2>/dev/null | sed -n 's/.*"gitVersion": "\(v[^"]*\)".*/\1/p' | tail -n 1) with calico, context $context"
}

minikube_start() {
  # A profile that exists already is the user's: reuse it, and at the end delete only
  # the namespaces (teardown). `minikube status` cannot tell "stopped" from "absent".
  if minikube profile list -o json 2>/dev/null | grep -q "\"Name\":\"$profile\""; then
    existed=1
    detail="reused profile $profile; "
  fi
  touched_cluster=1 # from here on, even an interrupted start leaves something to delete
  # The README's flags; --cni=calico because the default CNI ignores NetworkPolicies.
  # minikube's own timeout rather than `timeout`, which would keep Ctrl-C from reaching it.
  minikube start -p "$profile" --memory=4000mb --cpus=2 --cni=calico --wait=all --wait-timeout="${start_timeout}s" ||
    { detail+="minikube start failed"; return 1; }
}

kind_start() {
  touched_cluster=1
  if kind get clusters 2>/dev/null | grep -qx "$profile"; then
    existed=1
    detail="reused kind cluster $profile; "
    return 0
  fi
  # kind's own CNI is replaced by Calico, which enforces NetworkPolicies (its default pod
  # range is 192.168.0.0/16). The web NodePort is published on the host's loopback only.
  kind create cluster --name "$profile" --wait "${start_timeout}s" --config - <<KIND || { detail+="kind create cluster failed"; return 1; }
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
networking:
  disableDefaultCNI: true
  podSubnet: 192.168.0.0/16
nodes:
  - role: control-plane
    extraPortMappings:
      - containerPort: $node_port
        hostPort: $node_port
        listenAddress: 127.0.0.1
KIND
  kc apply -f "$calico_manifest" >/dev/null || { detail+="cannot apply $calico_manifest"; return 1; }
}

check_image() {
  if [[ $cluster == minikube ]]; then
    timeout --foreground "$image_timeout" minikube -p "$profile" image build -t "$auth_image" images/sentry-auth ||
      { detail="minikube image build failed"; return 1; }
    minikube -p "$profile" image ls | grep -q "${auth_image%:*}" || { detail="$auth_image not in the cluster after the build"; return 1; }
  else
    timeout --foreground "$image_timeout" docker build -t "$auth_image" images/sentry-auth || { detail="docker build failed"; return 1; }
    kind load docker-image "$auth_image" --name "$profile" || { detail="kind load docker-image failed"; return 1; }
  fi
  detail="built $auth_image"
}

# The web Service from outside the cluster, as a user reaches it: through its NodePort.
web_url() {
  if [[ $(value service_type) == ClusterIP ]]; then
    detail="the web Service is ClusterIP: make e2e reaches it through its NodePort (sentry.web.service_type)"
    return 1
  fi
  if [[ $cluster == kind ]]; then
    # Where Docker publishes the node's NodePort (kind_start maps it; an existing cluster may not).
    url="$(docker port "$profile-control-plane" "$node_port/tcp" 2>/dev/null | head -n 1)"
    [[ -n $url ]] || { detail="kind node $profile-control-plane does not publish port $node_port"; return 1; }
    url="http://$url"
    return 0
  fi
  # `minikube service --url` returns at once on Linux and keeps a tunnel open on macOS:
  # run it in the background.
  minikube -p "$profile" service -n "$ns" "$release-web" --url >"$work/service-url" 2>"$work/service-url.err" &
  bg_pids+=("$!")
  local i
  for i in $(seq 60); do
    url="$(grep -m 1 -o 'http://[^ ]*' "$work/service-url" || true)"
    [[ -z $url ]] || return 0
    sleep 1
  done
  cat "$work/service-url.err" >&2
  detail="minikube service --url gave no URL"
  return 1
}

check_deploy() {
  make --no-print-directory synth CONFIG="$config" >"$work/synth.log" 2>&1 || { cat "$work/synth.log" >&2; detail="make synth failed"; return 1; }
  apply_dist >"$work/apply.log" 2>&1 || { cat "$work/apply.log" >&2; detail="make apply failed"; return 1; }
  local deadline=$((SECONDS + deploy_timeout)) started=$SECONDS job sts
  for sts in postgresql redis; do
    k rollout status "statefulset/$release-$sts" --timeout="$((deadline - SECONDS))s" ||
      { diagnose; detail="$release-$sts not ready"; return 1; }
  done
  for job in $(k get jobs -l "app.kubernetes.io/instance=$release,app.kubernetes.io/component=migrations" -o name); do
    wait_job "${job#*/}" "$((deadline - SECONDS))" || { diagnose; detail="migration ${job#*/} did not complete"; return 1; }
  done
  rollouts web worker cron || { diagnose; detail="a Sentry Deployment did not become ready"; return 1; }
  admin_pw="$(k get secret "$secret_name" -o jsonpath='{.data.admin-password}' | base64 -d)" || true
  [[ -n $admin_pw ]] || { detail="no admin-password in Secret $secret_name"; return 1; }
  web_url || return 1
  detail="ready after $((SECONDS - started))s at $url"
}

check_login() {
  local out
  out="$(http login --url "$url" --email "$admin_email")" || { detail="login failed (see above)"; return 1; }
  detail="$admin_email: $out"
}

check_event() {
  http send-event --url "$url" --email "$admin_email" --state "$work/event.json" || { detail="sending failed"; return 1; }
  detail="$(http wait-event --url "$url" --email "$admin_email" --state "$work/event.json" --timeout "$event_timeout")" ||
    { diagnose; detail="the event was not processed"; return 1; }
}

check_zero_downtime() {
  local before after stop="$work/watch.stop" report="$work/watch.json" pid rc=0
  before="$(pods_of 'web,worker')"
  python3 tools/e2e_http.py watch --url "$url" --stop-file "$stop" --report "$report" \
    --max-seconds "$((2 * rollout_timeout + 120))" >"$work/watch.out" 2>&1 &
  pid=$!
  bg_pids+=("$pid")
  sleep "$settle" # requests before the rollout, as a baseline
  if ! k rollout restart "deployment/$release-web" "deployment/$release-worker" || ! rollouts web worker; then
    touch "$stop"
    wait "$pid" || true
    diagnose
    detail="the rollout did not finish"
    return 1
  fi
  sleep "$settle" # and after it, when the old pods' endpoints are gone
  touch "$stop"
  wait "$pid" || rc=$?
  cat "$work/watch.out"
  after="$(pods_of 'web,worker')"
  detail="$(head -n 1 "$work/watch.out") during the rollout of web and worker"
  if [[ -n $(comm -12 <(echo "$before") <(echo "$after")) ]]; then
    detail+="; but some pods were not replaced"
    return 1
  fi
  return "$rc"
}

check_backup_restore() {
  [[ $(value backup_enabled) == true ]] || { detail="postgres.backup.enabled is off in $config"; return 1; }
  local job dump restore_values="$work/restore-values.yaml" cronjobs=("$release-backup")
  [[ $(value cleanup_enabled) == true ]] && cronjobs+=("$release-cleanup")

  # Backup: a Job from the CronJob, as docs/operations.md says; a dump's name is logged only
  # after it was verified (constructs/scripts/postgres-backup.sh).
  job="$release-backup-e2e-$(date -u +%H%M%S)"
  k create job --from="cronjob/$release-backup" "$job" || { detail="cannot create $job"; return 1; }
  wait_job "$job" "$job_timeout" || { diagnose; detail="backup job $job failed"; return 1; }
  k logs "job/$job" --all-containers >"$work/backup.log" || true
  cat "$work/backup.log"
  dump="$(sed -n 's|^backup: wrote .*/\(sentry-[0-9]\{8\}T[0-9]\{6\}Z\) .*|\1|p' "$work/backup.log" | tail -n 1)"
  [[ -n $dump ]] || { detail="no verified dump in the backup log"; return 1; }

  # Restore: the runbook (docs/operations.md, Backup and restore), step by step.
  local cj
  for cj in "${cronjobs[@]}"; do
    k patch cronjob "$cj" -p '{"spec":{"suspend":true}}' || { detail="cannot suspend $cj"; return 1; }
  done
  k scale deployment "$release-web" "$release-worker" "$release-cron" --replicas=0 || { detail="cannot scale to 0"; return 1; }
  wait_gone "app.kubernetes.io/instance=$release,app.kubernetes.io/component in (web,worker,cron)" 600 ||
    { diagnose; detail="Sentry pods did not stop"; return 1; }
  .venv/bin/python tools/e2e_values.py restore-values "$config" "$dump" "$restore_values" || { detail="restore values"; return 1; }
  make --no-print-directory synth CONFIG="$restore_values" >"$work/synth.log" 2>&1 || { cat "$work/synth.log" >&2; detail="make synth (restore) failed"; return 1; }
  k delete job "$release-restore" --ignore-not-found || { detail="cannot delete the old restore Job"; return 1; }
  # Restore mode: the database objects, then the restore Job; Sentry stays stopped.
  apply_dist >"$work/apply.log" 2>&1 || { cat "$work/apply.log" >&2; detail="cannot apply the restore Job"; return 1; }
  wait_job "$release-restore" "$job_timeout" || { k logs "job/$release-restore" >&2 || true; diagnose; detail="restore job failed"; return 1; }
  k logs "job/$release-restore" >"$work/restore.log" || true
  cat "$work/restore.log"
  if ! grep -q "^restore: checked: all [0-9]* tables have the backup's row counts" "$work/restore.log" ||
    ! grep -q "^restore: done" "$work/restore.log"; then
    detail="the restore log lacks its checks"
    return 1
  fi

  # Step 6: restore off, synthesize, apply; Sentry and the schedules come back.
  make --no-print-directory synth CONFIG="$config" >"$work/synth.log" 2>&1 || { cat "$work/synth.log" >&2; detail="make synth failed"; return 1; }
  apply_dist >"$work/apply.log" 2>&1 || { cat "$work/apply.log" >&2; detail="make apply after the restore failed"; return 1; }
  rollouts web worker cron || { diagnose; detail="Sentry did not come back after the restore"; return 1; }
  for cj in "${cronjobs[@]}"; do
    [[ $(k get cronjob "$cj" -o jsonpath='{.spec.suspend}') == false ]] || { detail="$cj is still suspended"; return 1; }
  done

  # Afterwards: login works and the event sent before the backup is still listed.
  http login --url "$url" --email "$admin_email" >/dev/null || { detail="login after the restore failed"; return 1; }
  http wait-event --url "$url" --email "$admin_email" --state "$work/event.json" --timeout 120 >/dev/null ||
    { detail="the event is gone after the restore"; return 1; }
  detail="restored $dump in place; login and the event survived"
}

check_network_policies() {
  [[ $(value network_policies) == true ]] || { detail="network.policies is off in $config"; return 1; }
  local script phase deadline result
  kc create namespace "$probe_ns" --dry-run=client -o yaml | kc apply -f - >/dev/null || { detail="cannot create $probe_ns"; return 1; }
  kc -n "$probe_ns" delete pod probe --ignore-not-found >/dev/null
  # The PostgreSQL image is already on the node and has bash, getent and timeout. A name
  # that does not resolve is reported as such, so a DNS failure never passes as "blocked".
  # shellcheck disable=SC2016 # expanded by the probe pod's bash, not here
  script='for t in "$@"; do set -- ${t//:/ }; if ! getent hosts "$2" >/dev/null; then echo "$1 no-dns";
    elif timeout 5 bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null; then echo "$1 open"; else echo "$1 blocked"; fi; done'
  kc -n "$probe_ns" run probe --image="$postgres_image" --restart=Never --command -- bash -c "$script" probe \
    "postgresql:$release-postgresql.$ns.svc.cluster.local:5432" \
    "redis:$release-redis.$ns.svc.cluster.local:6379" \
    "web:$release-web.$ns.svc.cluster.local:9000" >/dev/null || { detail="cannot start the probe pod"; return 1; }
  deadline=$((SECONDS + 300))
  while ((SECONDS < deadline)); do
    phase="$(kc -n "$probe_ns" get pod probe -o jsonpath='{.status.phase}')"
    [[ $phase == Succeeded || $phase == Failed ]] && break
    sleep 3
  done
  result="$(kc -n "$probe_ns" logs probe 2>&1 || true)"
  echo "$result"
  detail="from namespace $probe_ns: $(tr '\n' ' ' <<<"$result")"
  grep -qx "postgresql blocked" <<<"$result" && grep -qx "redis blocked" <<<"$result" && grep -qx "web open" <<<"$result"
}

teardown() {
  local delete=(minikube delete -p "$profile")
  [[ $cluster == minikube ]] || delete=(kind delete cluster --name "$profile")
  if ((keep)); then
    record teardown SKIP "--keep: $context left running (${delete[*]})"
  elif ((existed)); then
    # Not our cluster: remove only what this run created in it.
    if kc delete namespace "$ns" "$probe_ns" --ignore-not-found --timeout=300s >/dev/null; then
      record teardown PASS "deleted namespaces $ns, $probe_ns from the reused $context"
    else
      record teardown FAIL "could not delete namespaces $ns, $probe_ns"
    fi
  elif "${delete[@]}" >/dev/null; then
    record teardown PASS "deleted $cluster cluster $profile"
  else
    record teardown FAIL "${delete[*]} failed"
  fi
}

finished=0
finish() {
  finished=1
  local pid
  for pid in "${bg_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  ((!touched_cluster)) || teardown
  rm -rf "$work"
  summary
}
# Whatever ends the script early (a signal, an unexpected error), the cluster is still
# torn down and the table printed.
on_exit() {
  local rc=$?
  ((finished)) && return "$rc"
  record aborted FAIL "the script stopped early (status $rc)"
  finish || true
  exit 1
}
trap on_exit EXIT
trap 'exit 130' INT TERM

run_check cluster check_cluster
if ((skip_image)); then record image SKIP "--skip-image"; else run_check image check_image cluster; fi
run_check deploy check_deploy cluster
run_check login check_login deploy
run_check event check_event login
run_check zero-downtime check_zero_downtime login
run_check backup-restore check_backup_restore event
run_check network-policies check_network_policies deploy
finish
