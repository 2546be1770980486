# ingress_double: a TEST DOUBLE of the Traefik ingress controller k3s ships
# (its HelmChart in kube-system, exposed on the node's ports 80/443 by
# servicelb). It is not Traefik: it configures Debian's nginx, a real proxy,
# from the Ingress objects, so that requests to an Ingress host go through a
# real TLS termination and a real reverse proxy to the Service's pods. Run by
# the k3s double on the first server unless its config disables traefik:
#   python -m ingress_double run --api URL --token-file PATH --root DIR
#
# What it imitates:
#   * Ingresses (networking.k8s.io/v1) of class "traefik" or of no class
#     (k3s makes traefik the default IngressClass); other classes are left
#     alone, as Traefik leaves them.
#   * It listens on the node's own address (--listen; the k3s double gives
#     the node's), as servicelb exposes the ports on the node: the Service
#     addresses of the kube-proxy double on the same ports stay reachable.
#   * Per rule host: HTTPS on :443 when a tls entry lists the host, with the
#     certificate and key of the Secret it names (type kubernetes.io/tls, in
#     the Ingress's namespace); plain HTTP on :80. A tls entry whose Secret is
#     missing or not a TLS pair leaves that host without HTTPS (Traefik would
#     serve its default certificate, which no client trusts either).
#   * Paths: Prefix (element-wise, "/" matches all), Exact, and
#     ImplementationSpecific as Prefix; the longest path wins. The backend is
#     the Service's port by number or name, reached at the kube-proxy
#     double's address for the Service (kube_proxy_double), so it goes to
#     ready pods only. A missing Service or port answers 503, as Traefik's
#     "no available server"; a Service with no ready pod answers 502.
#   * Requests without a matching host: 404 on :80 and the TLS handshake
#     refused on :443 (Traefik answers 404 with its own default certificate).
#   * Streaming: responses are not buffered (server-sent events pass through
#     as they come), request bodies are streamed, timeouts are 10 minutes.
#   * Changes follow the API within about a second (nginx reloaded after
#     `nginx -t` passes; a config nginx refuses is logged and the last good
#     one kept).
# What it cannot show: Traefik's own behaviour (its middlewares, the
# traefik.ingress.kubernetes.io/* annotations, IngressRoute CRDs, its
# default certificate, HTTP/3), servicelb's LoadBalancer status or ports on
# the agents, defaultBackend, resource backends, wildcard hosts, or that the
# HelmChart that deploys Traefik on k3s works.
