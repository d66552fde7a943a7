"""SMALL STAND-INS for the upstream add-on manifests the cni and dashboard roles read offline.

The test machines have no internet, so the real files (Calico's operator-crds.yaml and tigera-operator.yaml,
flannel's kube-flannel.yml, the rajch/weave fork's DaemonSet manifest) cannot be had here. Each stand-in keeps what
the roles and their tests depend on: the real file name and offline path (`manifests/<cni>/<file>`, roles/cni/README.md), the real kinds,
names and namespaces of the main objects, and the upstream defaults the roles must override (flannel's net-conf.json
"Network": "10.244.0.0/16"; weave's DaemonSet without IPALLOC_RANGE). Everything else upstream ships (RBAC
details, full CRD schemas, probes, images of every architecture) is left out. They are never installed on a real
cluster: the kubectl TEST DOUBLE (tests/doubles/kubectl) records what is applied and, as kubectl does, refuses a
custom resource before its CRD exists. Calico's pair mirrors upstream's split since 3.30 (every CRD in
operator-crds.yaml, none in tigera-operator.yaml), so an install that skips operator-crds.yaml fails here too.

Cilium's chart and the legacy kubernetes-dashboard chart need a real helm binary to render, which cannot be had
here either, so there are no stand-ins for them (the roles' helm paths are covered by syntax checks and template
tests in tests/test_addons.py).
"""

from __future__ import annotations


def _crd(group: str, kind: str, plural: str, scope: str = "Cluster") -> str:
    return f"""---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {plural}.{group}
spec:
  group: {group}
  names: {{kind: {kind}, listKind: {kind}List, plural: {plural}, singular: {kind.lower()}}}
  scope: {scope}
  versions:
    - name: v1
      served: true
      storage: true
      schema: {{openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}}}
"""


# STAND-IN for https://raw.githubusercontent.com/projectcalico/calico/<version>/manifests/operator-crds.yaml: from
# Calico 3.30 every CRD of the operator install ships here (operator.tigera.io and crd.projectcalico.org), none in
# tigera-operator.yaml. Upstream's full list has ~30 CRDs with full schemas; the stand-in keeps the operator's
# resources the role creates (and their neighbours) and a few of Calico's own, with schemas left open.
OPERATOR_CRDS = "# STAND-IN for Calico's operator-crds.yaml (tests/doubles/addons.py): not the real manifest.\n" + "".join(
    _crd("operator.tigera.io", kind, plural) for kind, plural in [
        ("APIServer", "apiservers"), ("Goldmane", "goldmanes"), ("ImageSet", "imagesets"),
        ("Installation", "installations"), ("ManagementClusterConnection", "managementclusterconnections"),
        ("TigeraStatus", "tigerastatuses"), ("Whisker", "whiskers")]) + "".join(
    _crd("crd.projectcalico.org", kind, plural) for kind, plural in [
        ("FelixConfiguration", "felixconfigurations"), ("IPPool", "ippools"),
        ("NetworkPolicy", "networkpolicies")])

# STAND-IN for https://raw.githubusercontent.com/projectcalico/calico/<version>/manifests/tigera-operator.yaml:
# like upstream's since 3.30, no CRD: the operator's namespace, its RBAC and Deployment.
TIGERA_OPERATOR = """\
# STAND-IN for Calico's tigera-operator.yaml (tests/doubles/addons.py): not the real manifest.
apiVersion: v1
kind: Namespace
metadata:
  name: tigera-operator
  labels:
    name: tigera-operator
    pod-security.kubernetes.io/enforce: privileged
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: tigera-operator
  namespace: tigera-operator
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: tigera-operator
rules:
  - apiGroups: [operator.tigera.io]
    resources: ["*"]
    verbs: ["*"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: tigera-operator
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: tigera-operator}
subjects:
  - {kind: ServiceAccount, name: tigera-operator, namespace: tigera-operator}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: tigera-operator
  namespace: tigera-operator
spec:
  replicas: 1
  selector:
    matchLabels: {name: tigera-operator}
  template:
    metadata:
      labels: {name: tigera-operator}
    spec:
      serviceAccountName: tigera-operator
      hostNetwork: true
      containers:
        - name: tigera-operator
          image: quay.io/tigera/operator:stand-in
          command: [operator]
"""

# STAND-IN for https://github.com/flannel-io/flannel/releases/download/<version>/kube-flannel.yml, with upstream's
# default net-conf.json (Network 10.244.0.0/16), which the role must replace with the cluster's pod CIDR.
KUBE_FLANNEL = """\
# STAND-IN for flannel's kube-flannel.yml (tests/doubles/addons.py): not the real manifest.
apiVersion: v1
kind: Namespace
metadata:
  name: kube-flannel
  labels:
    k8s-app: flannel
    pod-security.kubernetes.io/enforce: privileged
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: flannel
  namespace: kube-flannel
---
kind: ClusterRole
apiVersion: rbac.authorization.k8s.io/v1
metadata:
  name: flannel
rules:
  - apiGroups: [""]
    resources: [nodes]
    verbs: [get, list, watch]
  - apiGroups: [""]
    resources: [nodes/status]
    verbs: [patch]
---
kind: ClusterRoleBinding
apiVersion: rbac.authorization.k8s.io/v1
metadata:
  name: flannel
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: flannel}
subjects:
  - {kind: ServiceAccount, name: flannel, namespace: kube-flannel}
---
kind: ConfigMap
apiVersion: v1
metadata:
  name: kube-flannel-cfg
  namespace: kube-flannel
  labels:
    tier: node
    k8s-app: flannel
    app: flannel
data:
  cni-conf.json: |
    {
      "name": "cbr0",
      "cniVersion": "0.3.1",
      "plugins": [
        {"type": "flannel", "delegate": {"hairpinMode": true, "isDefaultGateway": true}},
        {"type": "portmap", "capabilities": {"portMappings": true}}
      ]
    }
  net-conf.json: |
    {
      "Network": "10.244.0.0/16",
      "EnableNFTables": false,
      "Backend": {
        "Type": "vxlan"
      }
    }
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: kube-flannel-ds
  namespace: kube-flannel
  labels: {tier: node, app: flannel, k8s-app: flannel}
spec:
  selector:
    matchLabels: {app: flannel}
  template:
    metadata:
      labels: {tier: node, app: flannel}
    spec:
      hostNetwork: true
      serviceAccountName: flannel
      containers:
        - name: kube-flannel
          image: ghcr.io/flannel-io/flannel:stand-in
          command: [/opt/bin/flanneld]
          args:
          - --ip-masq
          - --kube-subnet-mgr
      volumes:
        - name: flannel-cfg
          configMap: {name: kube-flannel-cfg}
"""

# STAND-IN for https://github.com/rajch/weave/releases/download/<version>/weave-daemonset-k8s-1.11.yaml: like
# upstream, one List whose DaemonSet has no IPALLOC_RANGE (the role adds it, set to the pod CIDR).
WEAVE_DAEMONSET = """\
# STAND-IN for the rajch/weave fork's weave-daemonset-k8s-1.11.yaml (tests/doubles/addons.py): not the real manifest.
apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: ServiceAccount
    metadata:
      name: weave-net
      namespace: kube-system
      labels: {name: weave-net}
  - apiVersion: rbac.authorization.k8s.io/v1
    kind: ClusterRole
    metadata:
      name: weave-net
      labels: {name: weave-net}
    rules:
      - apiGroups: [""]
        resources: [pods, namespaces, nodes]
        verbs: [get, list, watch]
  - apiVersion: rbac.authorization.k8s.io/v1
    kind: ClusterRoleBinding
    metadata:
      name: weave-net
      labels: {name: weave-net}
    roleRef: {kind: ClusterRole, name: weave-net, apiGroup: rbac.authorization.k8s.io}
    subjects:
      - {kind: ServiceAccount, name: weave-net, namespace: kube-system}
  - apiVersion: apps/v1
    kind: DaemonSet
    metadata:
      name: weave-net
      namespace: kube-system
      labels: {name: weave-net}
    spec:
      selector:
        matchLabels: {name: weave-net}
      template:
        metadata:
          labels: {name: weave-net}
        spec:
          hostNetwork: true
          serviceAccountName: weave-net
          containers:
            - name: weave
              image: rajchaudhuri/weave-kube:stand-in
              command: [/home/weave/launch.sh]
              env:
                - name: HOSTNAME
                  valueFrom:
                    fieldRef: {apiVersion: v1, fieldPath: spec.nodeName}
                - name: INIT_CONTAINER
                  value: "true"
            - name: weave-npc
              image: rajchaudhuri/weave-npc:stand-in
              env:
                - name: HOSTNAME
                  valueFrom:
                    fieldRef: {apiVersion: v1, fieldPath: spec.nodeName}
"""


def addon_files() -> dict[str, bytes]:
    """The stand-ins, keyed by their path in the offline artifacts directory (paths relative to it)."""
    return {
        "manifests/calico/operator-crds.yaml": OPERATOR_CRDS.encode(),
        "manifests/calico/tigera-operator.yaml": TIGERA_OPERATOR.encode(),
        "manifests/flannel/kube-flannel.yml": KUBE_FLANNEL.encode(),
        "manifests/weave/weave-daemonset-k8s-1.11.yaml": WEAVE_DAEMONSET.encode(),
    }
