# nvidia_gpu_exporter_double: a TEST DOUBLE of utkuozdemir/nvidia_gpu_exporter
# (v1.14.0, the image roles/monitoring deploys on the GPU workers). It is not
# the exporter: that is a Go binary from GitHub, which cannot be had on the
# test machines. It exists so that the cards dashboard's queries are evaluated
# against series named and shaped as the exporter names them.
#
# What it imitates:
#   * flags --web.listen-address, --web.telemetry-path, --nvidia-smi-command
#     and --collect.compute-apps; any other flag is refused (exit 1).
#   * GET <telemetry path>: the last collection; every second it runs nvidia-smi (the command
#     given, in tests tests/doubles/nvidia-smi-double) for the GPU fields and,
#     with --collect.compute-apps, for the compute apps, and prints the
#     families below in the exporter's names, units (MiB -> bytes, % -> ratio)
#     and labels (uuid lower case without "GPU-", as the exporter writes it):
#       nvidia_smi_gpu_info{uuid,name,driver_version,index} 1
#       nvidia_smi_memory_total_bytes / _used_bytes{uuid}
#       nvidia_smi_utilization_gpu_ratio{uuid}, nvidia_smi_temperature_gpu{uuid},
#       nvidia_smi_power_draw_watts{uuid}
#       nvidia_smi_compute_app_info / _used_memory_bytes{uuid,pid,process_name},
#       nvidia_smi_compute_apps{uuid}
#       nvidia_smi_last_collect_success, nvidia_smi_command_exit_code
#     tests/unit/fixtures/nvidia_gpu_exporter/v1.14.0-families.txt lists the
#     same families as the exporter's own golden output for a GeForce card
#     prints them, and a unit test holds the two together.
# What it cannot show: the exporter's AUTO field discovery (it asks for a
# fixed field list; the real one exports ~90 series per card), its collection
# interval flags and timeouts, the NVML backend, or that the container sees the
# card and the host's PIDs (runtimeClassName nvidia and hostPID in the
# DaemonSet are checked only against the schema).
