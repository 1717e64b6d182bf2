from runtime.protocol.rewrite import RewriteRules, rewrite_request, split_thinking, wants_thinking

RULES = RewriteRules()


def test_model_is_rewritten_to_the_served_name() -> None:
    out = rewrite_request({"model": "x:THINKING"}, "x", RULES, thinking=False, chat=True)
    assert out["model"] == "x"


def test_streaming_gets_include_usage_and_keeps_other_options() -> None:
    body = {"model": "m", "stream": True, "stream_options": {"continuous_usage_stats": True}}
    out = rewrite_request(body, "m", RULES, thinking=False, chat=True)
    assert out["stream_options"] == {"continuous_usage_stats": True, "include_usage": True}
    assert body["stream_options"] == {"continuous_usage_stats": True}  # input not mutated
    assert "stream_options" not in rewrite_request(
        {"model": "m"}, "m", RULES, thinking=False, chat=True
    )


def test_tools_without_tool_choice_get_auto() -> None:
    body = {"model": "m", "tools": [{"type": "function"}]}
    assert rewrite_request(body, "m", RULES, thinking=False, chat=True)["tool_choice"] == "auto"
    body["tool_choice"] = "none"
    assert rewrite_request(body, "m", RULES, thinking=False, chat=True)["tool_choice"] == "none"


def test_thinking_sets_both_template_flags() -> None:
    body = {"model": "m", "chat_template_kwargs": {"x": 1}}
    out = rewrite_request(body, "m", RULES, thinking=True, chat=True)
    assert out["chat_template_kwargs"] == {"x": 1, "thinking": True, "enable_thinking": True}


def test_logprobs_without_top_logprobs_gets_one() -> None:
    out = rewrite_request({"model": "m", "logprobs": True}, "m", RULES, thinking=False, chat=True)
    assert out["top_logprobs"] == 1
    out = rewrite_request({"model": "m", "logprobs": 3}, "m", RULES, thinking=False, chat=False)
    assert "top_logprobs" not in out


def test_each_rule_can_be_switched_off() -> None:
    rules = RewriteRules(include_usage=False, tool_choice=False, thinking=False, top_logprobs=False)
    body = {"model": "m", "stream": True, "tools": [{}], "logprobs": True}
    out = rewrite_request(body, "m", rules, thinking=True, chat=True)
    assert out == body


def test_thinking_signals() -> None:
    assert split_thinking("m:THINKING") == ("m", True)
    assert split_thinking("m") == ("m", False)
    assert wants_thinking(b"true") and wants_thinking(b" TRUE") and not wants_thinking(b"no")
    assert not wants_thinking(None)
