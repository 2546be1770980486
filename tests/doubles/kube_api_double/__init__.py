# kube_api_double: a TEST DOUBLE of kube-apiserver (with the few pieces of
# kube-controller-manager and kube-scheduler listed below). It is not
# Kubernetes. It exists because no real API server can be had on the test
# machines, and it stands behind the k3s double on the server node so that
# kubernetes.core and the `kubernetes` Python client talk to something that
# answers as a real server does. Written here rather than taken from PyPI:
# kmock 0.8 (aiohttp) has no server-side apply, no managedFields and no
# schema validation. Run: python -m kube_api_double serve ... (see __main__).
#
# What it imitates:
#   * HTTPS with a CA, serving cert (--tls-san + 127.0.0.1, localhost,
#     kubernetes.default.svc...) and admin client cert (CN system:admin,
#     O system:masters) made once under DATA/tls and kept; a k3s.yaml-shaped
#     kubeconfig (0600). Auth: a client cert signed by the CA, or Basic
#     node:<token> (k3s agents), or Bearer <ServiceAccount token Secret>
#     (user system:serviceaccount:NS:NAME, groups system:serviceaccounts,
#     system:serviceaccounts:NS, system:authenticated); else 401 Status.
#     GET /cacerts (no auth) gives the CA, as k3s does.
#   * RBAC for every caller that is neither system:masters (the admin cert)
#     nor a node (Basic node:<token>), so for ServiceAccount tokens: the RBAC
#     authorizer over the stored Roles, ClusterRoles, RoleBindings and
#     ClusterRoleBindings (rbac.py). Request attributes as RequestInfoFactory
#     derives them: get/list/watch (?watch=true)/create/update/patch/delete/
#     deletecollection, a subresource as "pods/proxy", "pods/status",
#     "deployments/scale" (for proxy: GET get, POST create, PUT update, PATCH
#     patch, DELETE delete), the name (for list/watch from a fieldSelector
#     metadata.name=X); rules with apiGroups, resources ("*", "*/scale"),
#     verbs ("*"), resourceNames (never matching a list or create without a
#     name); subjects User, Group, ServiceAccount (its namespace defaulting to
#     a RoleBinding's); ClusterRoleBindings anywhere, then the request
#     namespace's RoleBindings (to a Role there or a ClusterRole). Refused: 403
#     Forbidden in the real words ('pods "x" is forbidden: User "system:
#     serviceaccount:llm:gpu-mode" cannot delete resource "pods" in API group
#     "" in the namespace "llm"', "at the cluster scope", 'cannot post path
#     "/x"'; a binding's missing role appended as ': RBAC: role.rbac...
#     "name" not found'), details name/group/kind. Discovery, /version and
#     /healthz are open to every authenticated caller (system:discovery,
#     system:public-info-viewer); of the bootstrap policy only the
#     cluster-admin ClusterRole and its binding to system:masters exist.
#   * Discovery (/api, /api/v1, /apis, /apis/G/V, legacy form only: the
#     Python client never asks for aggregated discovery), /version, /healthz.
#   * get/list/watch/create/update/patch/delete/deletecollection on the
#     resources in schema.BUILTIN, helm.cattle.io/v1 HelmChart and any CRD
#     given by --crd-schema or created through the API.
#   * Strict validation of every object written through the API against the
#     pinned version's schema (kubernetes_validate *-local-strict; unknown
#     fields rejected whatever fieldValidation says), names (RFC 1123/1035
#     with the real messages), label/annotation keys, readiness gates'
#     conditionType (a qualified name, in pods and pod templates), and the
#     immutability rules in
#     schema.semantic_errors: workload selectors, Service clusterIP, immutable
#     Secrets/ConfigMaps, PVC spec (storage may grow), Job template, Pod spec,
#     metadata name/namespace/uid.
#   * Defaulting that clients read back (schema.apply_defaults), the same on
#     every write, so re-applying the same config is a no-op.
#   * Patches: JSON merge, JSON patch, strategic merge (merge keys for
#     containers/env/ports/volumes/volumeMounts/conditions/..., status
#     containerStatuses replaced whole as the real schema says, `$patch:
#     delete|replace`; tolerations and other lists without a merge key are
#     replaced, as the real schema says; `$retainKeys` ignored), and
#     server-side apply with managedFields (fieldsV1) per manager: removal of
#     fields a manager stops applying, 409 conflicts in the real message
#     shape unless force, and a no-op apply that changes nothing (no new
#     resourceVersion, generation or managedFields time). dryRun=All.
#   * resourceVersion (one counter), uid, generation (spec changes only),
#     creationTimestamp; 409 on a stale resourceVersion; namespaced objects
#     need their Namespace; the four default namespaces; state in
#     DATA/state.json after every mutation, so a restart keeps everything.
#   * Watch (?watch=true|1, resourceVersion, timeoutSeconds, label/field
#     selectors): ADDED/MODIFIED/DELETED lines; 410 Expired if too old.
#   * Subresources: status (main-resource writes keep status, status writes
#     change only status), scale (autoscaling/v1, deployments/replicasets/
#     statefulsets), pods/eviction honouring PodDisruptionBudgets (429 with
#     the real message and DisruptionBudget cause).
#   * Controllers, a pass when the store changes (at most one per 0.2 s)
#     and every second for what time alone changes: Deployment ->
#     ReplicaSet (one per template hash, named <deploy>-<hash10>) -> Pods
#     (<rs>-<rand5>, owner references), Recreate and RollingUpdate
#     (maxSurge/maxUnavailable, readiness, minReadySeconds),
#     Deployment/ReplicaSet status and conditions with the real reasons; a scheduler (Ready, unschedulable,
#     nodeSelector, required node affinity, taints/tolerations, requests vs
#     allocatable incl. extended resources, hostPorts in use (with
#     --shared-pod-network, as the k3s double runs it: every containerPort,
#     since the node-agent double runs pods in the node's network; stricter
#     than a real cluster, never looser), "0/N nodes are available: ..."
#     messages); RuntimeClass admission (missing class -> 403, scheduling
#     merged into the pod) and default not-ready/unreachable tolerations;
#     node lifecycle (Ready=Unknown after --node-grace-s without heartbeat,
#     with the unreachable/not-ready taints); PDB status; Namespace deletion;
#     garbage collection by ownerReferences (background; Orphan honoured;
#     Foreground treated as background); Endpoints for Services with a
#     selector; the ServiceAccount token controller for token Secrets.
#   * GET services/NAME[:PORT]/proxy/PATH: forwarded to the Service's first
#     ready endpoint (plain HTTP), as the API server's service proxy does.
#   * GET|POST|PUT|PATCH|DELETE pods/[SCHEME:]NAME[:PORT]/proxy[/PATH][?Q]
#     (pod.ResourceLocation and the proxy handler): method, path (decoded,
#     trailing slash kept), query, body and headers (never the caller's
#     Authorization) to the pod's first podIPs address and PORT (no PORT: the
#     first containerPort; a PORT that is no number is dialled as a service
#     name, as Go does: a container port's name is NOT looked up, as in the
#     real server); the backend's status, Content-Type and body passed back,
#     redirects not followed; https unverified. 400 "address not allowed"
#     without a pod IP or with one that is not global unicast, 400 'invalid pod
#     request', 503 ServiceUnavailable "error trying to reach service: ..."
#     when the pod does not answer (a pod not Running but with an IP is tried,
#     as the real server does). Deliberately looser than the real server in
#     one case only: a loopback podIP equal to the pod's hostIP is allowed,
#     because the node-agent double runs pods in their node's network and the
#     k3s double's server node has the address 127.0.0.1 (a real node's never
#     is). pods/proxy and services/proxy are listed in discovery.
#   * Pod readiness gates (spec.readinessGates), for the kubelet doubles: a
#     gate's condition is anyone's to set through pods/status (strategic merge:
#     conditions merge by type); the Endpoints controller lists a not-Ready pod
#     under notReadyAddresses.
#   * POST /v1-k3s-double/nodes/<name> (DOUBLE-ONLY, Basic node:<token>):
#     what a k3s agent's kubelet does: registers the Node (labels and
#     taints only at creation) and posts its status heartbeat.
#
# What it cannot show: a real admission chain, webhooks, node authorization
# (any node credential may do everything; k3s runs Node,RBAC), RBAC's
# escalation checks (creating a Role or a binding needs only create on it),
# ClusterRole aggregation (an aggregationRule is stored, its rules never
# filled in), the other bootstrap roles and bindings (admin, edit, view,
# system:*), impersonation, SubjectAccessReviews, TokenRequest and bound
# tokens (only legacy token Secrets authenticate, and still after their
# ServiceAccount is gone), validation of pod status condition types, the
# pod proxy's link rewriting of HTML, HEAD/OPTIONS, upgrades (websockets)
# and streaming (an answer is read whole, 300 s at most), response headers
# other than Content-Type, pods/log, exec, attach and portforward, real
# scheduling (no scoring,
# preemption, pod affinity or topology spread), CNI, kube-proxy or DNS, etcd,
# API priority and fairness, aggregated discovery, protobuf/CBOR, Table
# output, OpenAPI documents, full SSA semantics for every list type (list
# types are known by field name, not from the schema; atomic maps are merged),
# managedFields of controller writes, CRD conversion, validation rules (CEL),
# pruning of unknown CR fields (they are rejected instead), StatefulSet,
# DaemonSet, Job and CronJob controllers (those objects are only stored),
# NoExecute eviction, pod GC, and containers: it never runs a pod. Pods stay
# Pending (PodScheduled True) until a kubelet double sets their status via
# pods/status, and a terminating pod goes only when that kubelet deletes it
# with gracePeriodSeconds=0 (never while its node is not Ready). The
# --fake-kubelet flag, used ONLY by this double's own tests
# (tests/unit/test_kube_api_double.py), marks bound pods Running (podIP
# 10.42.0.N, which reaches nothing: the tests set 127.0.0.1 themselves) with
# their containers ready, Ready as the kubelet computes it (every readiness
# gate's condition "True", else False, reason ReadinessGatesNotReady, the
# kubelet's message), writing only its own conditions, and finishes their
# deletions; the k3s double must not pass it.
