"""The CRI lane's test tools: Debian's real containerd, runc and CNI plugins laid out as upstream releases, small
images built here, and a CRI client that drives containerd the way the kubelet does (tests/test_cri.py)."""
