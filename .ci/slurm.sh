# A single-node SLURM cluster on this machine for the cluster tests (tests/cluster), sourced by
# .ci/run: Debian's `slurm-wlm` and `munge` (installed if missing), munged as the `munge` user
# with a generated key, slurmctld + slurmd as root, all state under one /tmp directory.
# start_slurm exports SLURM_CONF (every SLURM command and submitit read it) and
# DAT_LAB_REQUIRE_SLURM=1; stop_slurm stops the daemons and removes the directory.
# Usage for development: `source .ci/slurm.sh && start_slurm` (then `stop_slurm`).
start_slurm() {
  local sudo="" host dir
  [ "$(id -u)" = 0 ] || sudo=sudo
  if ! command -v slurmctld > /dev/null || ! command -v munged > /dev/null; then
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends \
      slurm-wlm munge
  fi
  host=$(hostname)
  dir=$(mktemp -d /tmp/dat_lab_ci_slurm.XXXXXX)
  SLURM_DIR=$dir
  chmod 755 "$dir"
  mkdir -p "$dir/munge" "$dir/state" "$dir/spool" "$dir/log"
  # munged refuses a key or socket directory that others can write: its own, mode 0700.
  dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
  chmod 700 "$dir/munge" && chmod 400 "$dir/munge/munge.key"
  $sudo chown -R munge: "$dir/munge"
  $sudo chmod 755 "$dir/munge"  # clients (sbatch, slurmd) connect to the socket
  $sudo runuser -u munge -- munged --key-file="$dir/munge/munge.key" \
    --socket="$dir/munge/munge.socket" --pid-file="$dir/munge/munged.pid" \
    --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed" --force
  local ctld_port slurmd_port
  read -r ctld_port slurmd_port < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
  cat > "$dir/slurm.conf" <<CONF
ClusterName=datlab
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
JobRequeue=1
MinJobAge=3600
KillWait=10
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
NodeName=$host CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  export SLURM_CONF=$dir/slurm.conf
  $sudo slurmctld -f "$SLURM_CONF"
  $sudo slurmd -f "$SLURM_CONF"
  local i
  for i in $(seq 50); do
    sinfo -h -o %T 2>/dev/null | grep -qx idle && break
    sleep 0.2
  done
  if ! sinfo -h -o %T | grep -qx idle; then
    echo "SLURM did not come up: $(sinfo 2>&1)" >&2
    tail -n 20 "$dir/log/"*.log >&2
    return 1
  fi
  export DAT_LAB_REQUIRE_SLURM=1
  echo "SLURM $(sinfo -V | awk '{print $2}') single-node cluster on $host (SLURM_CONF=$SLURM_CONF)"
}
stop_slurm() {
  [ -n "${SLURM_DIR:-}" ] || return 0
  local sudo="" f
  [ "$(id -u)" = 0 ] || sudo=sudo
  for f in slurmd.pid slurmctld.pid munge/munged.pid; do
    [ -f "$SLURM_DIR/$f" ] && $sudo kill "$(cat "$SLURM_DIR/$f")" 2> /dev/null || true
  done
  sleep 1
  $sudo rm -rf "$SLURM_DIR"
  SLURM_DIR=""
}
