#!/bin/sh
# provision logs: one node's journals, configuration and state, as `kind export logs` gives them, packed into
# the tarball named by $1. Nothing is redacted here: provision redacts every file on the control machine before
# anything is kept (provision/logs.py).
set -u
out=$(mktemp -d /tmp/provision-logs.XXXXXX)
trap 'rm -rf "$out"' EXIT
mkdir -p "$out/journal" "$out/commands" "$out/files"

for unit in kubelet containerd etcd haproxy keepalived ssh; do
  if systemctl cat "$unit.service" >/dev/null 2>&1; then
    journalctl -b -u "$unit" --no-pager -o short-iso >"$out/journal/$unit.log" 2>&1
  fi
done

run() { name=$1; shift; "$@" >"$out/commands/$name.txt" 2>&1; }
run ip-addr ip addr
run ip-route ip route
run nft-ruleset nft list ruleset
run iptables-save iptables-save
run containers ctr -n k8s.io containers ls
run tasks ctr -n k8s.io tasks ls
run images ctr -n k8s.io images ls
run crictl-ps crictl ps -a
run failed-units systemctl --failed --no-legend
run mounts findmnt -l
run versions sh -c 'uname -a; . /etc/os-release; echo "$PRETTY_NAME"; for t in containerd runc kubelet \
  kubeadm etcd haproxy keepalived; do command -v $t >/dev/null && echo "$t: $($t --version 2>&1 | head -1)"; done'

for f in /etc/hosts /etc/resolv.conf /etc/containerd/config.toml /var/lib/kubelet/config.yaml \
    /var/lib/kubelet/kubeadm-flags.env /etc/haproxy/haproxy.cfg /etc/keepalived/keepalived.conf \
    /etc/etcd/*.env /etc/kubernetes/manifests/*; do
  if [ -f "$f" ]; then
    mkdir -p "$out/files$(dirname "$f")" && cp "$f" "$out/files$f"
  fi
done

tar -czf "$1" -C "$out" .
