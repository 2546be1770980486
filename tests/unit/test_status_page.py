# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""The status page filters (plugins/filter/status_page.py): vLLM's cache config
read from its /metrics text, the page from plain data. The same filters run on
a real vLLM's /metrics in tests/e2e/test_monitoring.py."""

from ansible_collections.homelab.gpu_stack.plugins.filter.status_page import status_page_html, vllm_cache_config

# The line as vLLM 0.32 prints it (labels abridged to those the page reads).
METRICS = """# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="16",cache_dtype="auto",engine="0",gpu_memory_utilization="0.89",num_gpu_blocks="1888"} 1.0
vllm:num_requests_running{engine="0",model_name="chat"} 0.0
"""


def test_cache_config_is_read_with_numbers_as_numbers():
    got = vllm_cache_config(METRICS)
    assert got["num_gpu_blocks"] == 1888 and got["block_size"] == 16
    assert got["gpu_memory_utilization"] == 0.89 and got["cache_dtype"] == "auto"
    assert vllm_cache_config("vllm:num_requests_running 0\n") == {}
    assert vllm_cache_config(None) == {}


def model(**over):
    base = {"name": "chat", "served_name": "chat", "node": "nuc", "url": "https://chat.example/v1",
            "state": "serving", "answering": "gpu (vLLM)", "route": ["gpu", "cpu"],
            "plan": {"kv_cache_tokens": 30208, "max_model_len": 8192}, "reported": vllm_cache_config(METRICS)}
    base.update(over)
    return base


def test_page_sets_the_reported_kv_cache_against_the_plan():
    page = status_page_html({"mode": "ml", "models": [model()]})
    assert "30208 of 30208 planned (+0.0%)" in page
    assert "Active GPU mode: <b>ml</b>" in page
    page = status_page_html({"models": [model(reported={}, state="scaled to 0", answering="cpu")]})
    assert "no reading" in page and "class='idle'" in page


def test_page_escapes_what_it_is_given():
    page = status_page_html({"models": [model(served_name="<script>x</script>")]})
    assert "<script>" not in page and "&lt;script&gt;" in page
