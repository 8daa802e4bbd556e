"""The conversations of the comparison suite: each is rendered with
add_generation_prompt on and off (and some with extra variables)."""
import copy

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current time in a time zone — returns ISO 8601",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": []},
    },
}

UNICODE = "Grüße aus Köln 🌍🚀 — 你好，世界! «ça va?» \"double\" 'single' back\\slash tab\there\nnew line ✓ ẞ"


def call(name, args, cid="call_1", as_string=False):
    import json
    return {"id": cid, "type": "function",
            "function": {"name": name, "arguments": json.dumps(args) if as_string else args}}


def base():
    sys_m = {"role": "system", "content": "You are a helpful assistant."}
    u1 = {"role": "user", "content": "Hello! How are you?"}
    a1 = {"role": "assistant", "content": "I'm fine, thank you. How can I help?"}
    u2 = {"role": "user", "content": "What is 2 + 2?"}
    a2 = {"role": "assistant", "content": "2 + 2 = 4."}
    c = []
    c.append(("user", {"messages": [u1]}))
    c.append(("system_user", {"messages": [sys_m, u1]}))
    c.append(("multi_turn", {"messages": [u1, a1, u2]}))
    c.append(("system_multi_turn", {"messages": [sys_m, u1, a1, u2, a2]}))
    c.append(("ends_with_assistant", {"messages": [u1, a1]}))
    c.append(("empty_content", {"messages": [{"role": "user", "content": ""}]}))
    c.append(("empty_assistant", {"messages": [u1, {"role": "assistant", "content": ""}, u2]}))
    c.append(("unicode", {"messages": [sys_m, {"role": "user", "content": UNICODE},
                                       {"role": "assistant", "content": "Ünïcödé ✓ 🎉"},
                                       {"role": "user", "content": "日本語で答えて"}]}))
    c.append(("padded", {"messages": [{"role": "user", "content": "  spaced out \n\n"},
                                      {"role": "assistant", "content": "\n ok \t"},
                                      {"role": "user", "content": "\tagain  "}]}))
    c.append(("parts", {"messages": [
        {"role": "user", "content": [{"type": "text", "text": "Describe this:"},
                                     {"type": "text", "text": " two parts 🌈"}]}]}))
    c.append(("parts_system", {"messages": [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Hello."}]},
        {"role": "user", "content": [{"type": "text", "text": "Bye"}]}]}))
    tc_msgs = [
        sys_m,
        {"role": "user", "content": "What's the weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [call("get_weather", {"city": "Paris", "unit": "celsius"})]},
        {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "{\"temp\": 21, \"sky\": \"clear\"}"},
        {"role": "assistant", "content": "It is 21 °C and clear in Paris."},
        {"role": "user", "content": "Thanks!"},
    ]
    c.append(("tool_calls", {"messages": tc_msgs, "tools": [WEATHER_TOOL, TIME_TOOL]}))
    c.append(("tool_calls_no_tools", {"messages": tc_msgs}))
    tc_str = copy.deepcopy(tc_msgs)
    tc_str[2] = {"role": "assistant", "content": None,
                 "tool_calls": [call("get_weather", {"city": "Paris"}, as_string=True)]}
    c.append(("tool_calls_string_args", {"messages": tc_str, "tools": [WEATHER_TOOL]}))
    multi = [
        {"role": "user", "content": "Weather in Paris and the time in Tokyo?"},
        {"role": "assistant", "content": None, "tool_calls": [
            call("get_weather", {"city": "Paris"}, "call_a", as_string=True),
            call("get_time", {"tz": "Asia/Tokyo"}, "call_b", as_string=True)]},
        {"role": "tool", "tool_call_id": "call_a", "name": "get_weather", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_b", "name": "get_time", "content": "2024-07-26T10:00"},
    ]
    c.append(("parallel_tool_calls", {"messages": multi, "tools": [WEATHER_TOOL, TIME_TOOL]}))
    c.append(("tools_only_user", {"messages": [u1], "tools": [WEATHER_TOOL]}))
    c.append(("tools_system", {"messages": [sys_m, u2], "tools": [TIME_TOOL]}))
    c.append(("reasoning", {"messages": [u1, {"role": "assistant", "content": "Fine.",
                                              "reasoning_content": "The user greets me.\nI answer."}, u2]}))
    c.append(("think_tags", {"messages": [u1, {"role": "assistant",
                                               "content": "<think>\nLet me think.\n</think>\n\nFine, thanks."}, u2]}))
    c.append(("enable_thinking_false", {"messages": [u2], "enable_thinking": False}))
    c.append(("enable_thinking_true", {"messages": [sys_m, u2], "enable_thinking": True}))
    c.append(("non_alternating", {"messages": [u1, u2]}))
    c.append(("assistant_first", {"messages": [a1, u1]}))
    c.append(("system_only", {"messages": [sys_m]}))
    c.append(("no_messages", {"messages": []}))
    c.append(("two_systems", {"messages": [sys_m, {"role": "system", "content": "Second system."}, u1]}))
    c.append(("long", {"messages": [sys_m] + [m for i in range(6) for m in (
        {"role": "user", "content": "question %d" % i}, {"role": "assistant", "content": "answer %d" % i})] + [u2]}))
    c.append(("date_string", {"messages": [sys_m, u1], "date_string": "26 Jul 2024",
                              "tools": [WEATHER_TOOL]}))
    c.append(("numbers_and_nulls", {"messages": [
        {"role": "user", "content": "numbers"},
        {"role": "assistant", "content": "", "tool_calls": [call("get_weather", {"city": "X", "days": 3, "ratio": 0.25, "flag": True, "none": None, "list": [1, 2.5, "a"]})]},
        {"role": "tool", "content": "[1, 2, 3]"}]}))
    return c


def all_conversations():
    out = []
    convs = base()
    # as transformers passes them: tools and documents always given, None when absent
    for name, v in list(convs[:4]) + [c for c in convs if c[0] in ("tool_calls", "parts")]:
        vv = copy.deepcopy(v)
        vv.setdefault("tools", None)
        vv["documents"] = None
        convs.append((name + "+hf_none", vv))
    for name, v in convs:
        for agp in (True, False):
            vv = copy.deepcopy(v)
            vv["add_generation_prompt"] = agp
            out.append(("%s%s" % (name, "+gen" if agp else ""), vv))
    return out
