"""node_agent_double: a TEST DOUBLE of the kubelet (and of containerd under it).

No kubelet or containerd can run here, so on each sandbox node this agent
plays them: it polls the Kubernetes API (the kube_api_double, or anything that
speaks the API) for the pods bound to its node and runs each container as a
real process: the CPU vLLM for the vLLM image, LiteLLM for the LiteLLM image,
whatever the image map (images.py, images.yaml) says stands in for an image.

What it imitates, and how faithfully:
- command/args against the image's ENTRYPOINT/CMD (containerd's rule),
  $(VAR) expansion (Kubernetes' own algorithm), env (value, secretKeyRef,
  configMapKeyRef, fieldRef) and envFrom. The process gets ONLY that env, the
  image's ENV lines from the map, PATH from the map, HOSTNAME = the pod's name
  and HOME as runc sets it (the image user's home, else /): nothing of the
  agent's own environment. Env the stand-in program needs but the image does
  not set (nodeEnv in the map) is added and named in the pod's "Pulled" event.
- the user: runAsUser/runAsGroup/fsGroup/supplementalGroups as numeric ids
  (setuid/setgid/setgroups), no passwd entry made for a uid the image does not
  define: a program that looks its user up fails as it would in the image.
- volumes: see volumes.py (no mount namespace: the container's paths ARE the
  node's paths; hostPath in place, the others linked at mountPath, a foreign
  node path never overwritten: the pod Fails, reason NodePathConflict).
- probes (startup, readiness, liveness; httpGet, tcpSocket, exec), restarts
  with the kubelet's back-off, restartCount/lastState, restartPolicy.
- pod status through pods/status (a strategic merge patch, only when it
  changed): phase, podIP/podIPs = hostIP = the node's address (every pod is
  hostNetwork-like), startTime, containerStatuses (replaced whole), and only
  the kubelet's own conditions (PodScheduled, PodReadyToStartContainers,
  Initialized, ContainersReady, Ready), which merge by type: a condition
  someone else sets (a readiness gate's) is never written back from a stale
  copy. Ready as the kubelet's GeneratePodReadyCondition: containers ready
  AND every spec.readinessGates condition "True" in the freshest pod the
  agent holds (else False, reason ReadinessGatesNotReady, the kubelet's
  message); ContainersReady ignores the gates. Events for what a kubelet
  reports.
- deletion: SIGTERM to each container's process group, SIGKILL after the grace
  period, then the final DELETE with gracePeriodSeconds=0.
- admission: extended resources (nvidia.com/gpu) against the Node's
  allocatable (pod Failed, UnexpectedAdmissionError); runtimeClassName only
  when k3s's containerd config on this node names the handler (else the pod
  stays Pending, FailedCreatePodSandBox "no runtime for ... is configured").
- logs: --root/logs/<ns>_<pod>_<container>.log (raw output, not CRI format).
- Node heartbeat: re-posts the Node's status every --heartbeat-s through the
  API double's registration endpoint, only for a Node someone registered.

What it cannot show:
- no container isolation: no namespaces, no cgroups (resources.limits are
  not enforced, no OOMKilled), no seccomp or capabilities, readOnly mounts and
  readOnlyRootFilesystem are not enforced; the processes see the node's whole
  filesystem and its other processes.
- no images and no pulls: an image the map does not know leaves the
  container Waiting, ErrImagePull, and the pod Pending, as on a node without
  the image and no registry; imageID is a digest of the map entry.
- no CNI, no pod network: processes share the node's network namespace, so
  two pods on one node cannot use the same port; a pod declaring a port that
  another pod on the node declares (or that is bound on the node) does not
  start: its containers wait with CreateContainerError naming the port. Ports
  a pod uses without declaring them cannot be checked.
- no real GPU and no device plugin: nvidia.com/gpu is only counted; no
  NVIDIA_VISIBLE_DEVICES, no /dev/nvidia*.
- not done: init containers, sidecars, ephemeral containers, lifecycle hooks
  (postStart/preStop), grpc probes, resourceFieldRef env, projected/downwardAPI/
  PVC volumes (the pod Fails, naming the type), configMap/secret updates after
  start, service-link env vars (KUBERNETES_SERVICE_HOST ...), CPU/memory
  admission, pod eviction under pressure, watch (it polls every --poll-s).
- the agent's restart kills the containers it left (pidfiles under
  --root/pids) and starts them again; a real kubelet restart leaves them.
"""
