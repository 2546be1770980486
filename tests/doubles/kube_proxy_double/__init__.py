# kube_proxy_double: a TEST DOUBLE of kube-proxy and of CoreDNS's Service
# records, one per sandbox node (k3s runs kube-proxy in its agent and CoreDNS
# as a pod). It is not kube-proxy: there are no iptables rules, no clusterIP
# on any interface (the sandbox nodes have no NET_ADMIN) and no DNS server.
# It exists so that the in-cluster URLs the roles write (LiteLLM's
# http://<svc>.<ns>.svc.cluster.local:<port>/v1) reach the pods behind them
# on the sandbox nodes, as they would on k3s. Run by the k3s double on every
# node: python -m kube_proxy_double run --api URL --token-file PATH.
#
# What it imitates:
#   * Service names: <svc>.<ns>.svc and <svc>.<ns>.svc.cluster.local resolve
#     on the node to the Service's own address, through a block it keeps in
#     /etc/hosts (written in place: Podman bind-mounts that file). The
#     address is not the clusterIP but its loopback twin: 10.43.B.C ->
#     127.43.B.C, unique per Service and stable for its life, as a clusterIP is.
#   * Each Service port listens on that address and forwards TCP connections
#     to the Service's ready endpoints (Endpoints subsets[].addresses, never
#     notReadyAddresses), round robin, trying the next endpoint when one
#     refuses, on the endpoint port of the same name: port and targetPort may
#     differ, as on a real cluster.
#   * A Service without a ready endpoint refuses connections (the listener is
#     closed), as kube-proxy's REJECT rule makes a client see "connection
#     refused" at once rather than a hang.
#   * Pods share their node's network in the node-agent double, so a pod
#     binds its ports on every address of its node, the Service's loopback
#     twin included. A Service port that a pod on this node declares is
#     therefore left to that pod (no listener: the pod could not bind): on
#     that node the Service address reaches the local pod, ready or not, and
#     only it. Elsewhere the Service behaves as above.
#   * Changes follow the API within about a second (it polls; kube-proxy
#     watches).
# What it cannot show: clusterIPs, NodePorts, LoadBalancer (servicelb),
# session affinity, externalTrafficPolicy, UDP, headless Services (no
# per-pod names), ExternalName, DNS search paths (the short name <svc> alone
# does not resolve), network policy, or that a real CoreDNS answers these
# names; connections already open to an endpoint that goes away are left to
# fail on their own, as with conntrack.
