"""`kubemind up`: the rendered overlay's InferenceServices run on this machine, behind nginx.

specs       overlay -> validated objects -> one ComponentPlan per predictor/transformer revision
storage     storageUri -> a local folder (models:/ through the node cache, file:// in place)
replicas    one supervised process per replica: started, health-polled, restarted with backoff
gateway     the nginx configuration (routing, canary split, gRPC) and the nginx process
policy      gateway policies from Istio objects (the local rate limit)
activator   scale from zero: holds the first request while a replica starts
state       the state file `kubemind status` and `kubemind down` read
kube_*      the Kubernetes API: kube_objects (the versioned, watchable store the runner
            reconciles from), kube_api (the HTTP server), kube_resources (discovery, tables),
            kube_patch (merge and JSON patch), kube_status (KServe's status fields)
runner      the reconcile loop tying them together
cli         `kubemind up`, `kubemind down`, `kubemind status`
"""
