"""provision: one cluster spec in, a working kubeadm Kubernetes cluster out.

The package reads top-down: spec -> topology -> inventory -> runner -> providers -> verify.
"""

__version__ = "0.1.0"
