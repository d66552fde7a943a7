"""The verbs of the command line, one module per concern; each declares its own arguments in `register()`.

`cluster` (init, plan, up, verify, kubeconfig, status, destroy), `nodes` (drain, uncordon, add-node, remove-node,
reset, upgrade) and `image` (the docker provider's node image). `provision.etcd_ops` and `provision.artifacts`
register their verbs the same way.
"""
