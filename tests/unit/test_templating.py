from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from engine.errors import TemplateError
from engine.playbooks import splices, templating


@pytest.fixture
def context() -> dict[str, Any]:
    return {
        "params": {"host": "web-1", "n": 3, "env": "prod", "tag": None, "version": "1.10"},
        "steps": {"check": {"output": {"rc": 0, "lines": ["a", "b"]}, "status": "succeeded"}},
        "run": {"id": "r-1", "trigger": "chat", "requested_by": "U1", "playbook": "demo"},
        "secrets": {"token": "s3cret"},
    }


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        pytest.param("{{ params.n }}", 3, id="int"),
        pytest.param("  {{ params.n + 1 }}  ", 4, id="whitespace-around"),
        pytest.param("{{ steps.check.output }}", {"rc": 0, "lines": ["a", "b"]}, id="dict"),
        pytest.param("{{ steps.check.output.lines }}", ["a", "b"], id="list"),
        pytest.param("{{ params.n > 2 }}", True, id="bool"),
        pytest.param("{{ params.tag }}", None, id="none"),
        pytest.param("{{ params.version }}", "1.10", id="numeric-looking-string-stays-str"),
        pytest.param("{{- params.host -}}", "web-1", id="trim-markers"),
        pytest.param("host={{ params.host }}", "host=web-1", id="text-around"),
        pytest.param("{{ params.n }}{{ params.n }}", "33", id="two-expressions"),
        pytest.param("{% if params.env == 'prod' %}careful{% endif %}", "careful", id="block"),
        pytest.param("plain text", "plain text", id="no-syntax"),
        pytest.param("a } or { b", "a } or { b", id="braces-alone"),
        pytest.param("{{ params.host | quote }}", "web-1", id="quote-filter-safe"),
        pytest.param("{{ 'a b' | quote }}", "'a b'", id="quote-filter-quotes"),
        pytest.param("{{ true | quote }} {{ none | quote }}", "true ''", id="quote-bool-none"),
        pytest.param("{{ ['a b', 1] | quote }}", "'[\"a b\", 1]'", id="quote-list-as-json"),
        pytest.param("{{ 185 | duration }}", "3m05s", id="duration-filter"),
        pytest.param("{{ {'a': 1} | tojson }}", '{"a": 1}', id="tojson"),
        pytest.param("{{ secrets.token }}", "s3cret", id="secrets"),
    ],
)
def test_render_string(template: str, expected: Any, context: dict[str, Any]) -> None:
    result = templating.render(template, context)
    assert result == expected
    assert type(result) is type(expected)


def test_render_recurses_into_dicts_and_lists_but_not_keys(context: dict[str, Any]) -> None:
    value = {
        "{{ params.host }}": "{{ params.n }}",
        "nested": {"list": ["{{ run.id }}", 5, True, None], "x": 1.5},
    }
    assert templating.render(value, context) == {
        "{{ params.host }}": 3,
        "nested": {"list": ["r-1", 5, True, None], "x": 1.5},
    }


def test_render_does_not_compile_plain_strings() -> None:
    before = templating._template.cache_info().currsize
    assert templating.render({"a": "no template here", "b": ["x } y"]}, {}) == {
        "a": "no template here",
        "b": ["x } y"],
    }
    assert templating._template.cache_info().currsize == before


def test_render_reuses_compiled_templates(context: dict[str, Any]) -> None:
    templating.render("host {{ params.host }} #cached", context)
    hits = templating._template.cache_info().hits
    templating.render("host {{ params.host }} #cached", context)
    assert templating._template.cache_info().hits == hits + 1


@pytest.mark.parametrize(
    ("template", "message"),
    [
        pytest.param(
            "{{ params.hots }}",
            "template '{{ params.hots }}': 'dict object' has no attribute 'hots'",
            id="missing-attribute",
        ),
        pytest.param("{{ nope }}", "template '{{ nope }}': 'nope' is undefined", id="unknown-name"),
        pytest.param(
            "host={{ params.hots }}",
            "template 'host={{ params.hots }}': 'dict object' has no attribute 'hots'",
            id="missing-in-text",
        ),
        pytest.param("{{ [params.zz] }}", "no attribute 'zz'", id="undefined-inside-native-list"),
        pytest.param("{{ params.n.x.y }}", "has no attribute 'x'", id="attribute-of-int"),
        pytest.param("{{ params.host + }}", "syntax error", id="syntax-error"),
        pytest.param("{% if %}", "syntax error", id="block-syntax-error"),
        pytest.param("{{ 1 / 0 }}", "ZeroDivisionError: division by zero", id="runtime-error"),
    ],
)
def test_render_errors(template: str, message: str, context: dict[str, Any]) -> None:
    with pytest.raises(TemplateError) as excinfo:
        templating.render({"a": [template]}, context)
    assert message in str(excinfo.value)


def test_error_message_shortens_long_templates(context: dict[str, Any]) -> None:
    template = "echo " + "x" * 200 + " {{ params.nope }}"
    with pytest.raises(TemplateError) as excinfo:
        templating.render(template, context)
    assert "..." in str(excinfo.value)
    assert len(str(excinfo.value)) < 200


@pytest.mark.parametrize(
    "template",
    [
        pytest.param("{{ ''.__class__.__mro__ }}", id="dunder-class-mro"),
        pytest.param("{{ ''.__class__ }}", id="dunder-class"),
        pytest.param("{{ params.__class__.__init__.__globals__ }}", id="globals"),
        pytest.param("{{ cycler.__init__.__globals__.os }}", id="cycler-globals"),
        pytest.param("{{ params.update({'host': 'evil'}) }}", id="mutate-context"),
        pytest.param("x{{ steps.check.output.lines.append('c') }}", id="mutate-list"),
    ],
)
def test_sandbox_blocks_unsafe_access(template: str, context: dict[str, Any]) -> None:
    with pytest.raises(TemplateError, match="template"):
        templating.render(template, context)
    assert context["params"]["host"] == "web-1"
    assert context["steps"]["check"]["output"]["lines"] == ["a", "b"]


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        pytest.param("steps.check.output.rc == 0", True, id="bare-true"),
        pytest.param("params.env == 'staging'", False, id="bare-false"),
        pytest.param("{{ params.env == 'prod' }}", True, id="wrapped"),
        pytest.param("true", True, id="true"),
        pytest.param("false", False, id="false"),
        pytest.param("params.tag", False, id="none-is-false"),
        pytest.param("params.tag is none and params.n > 2", True, id="tests-and-logic"),
        pytest.param("steps.check.output.lines", True, id="non-empty-list"),
        pytest.param("{% if params.n > 1 %}yes{% endif %}", True, id="block-yes"),
        pytest.param("{% if params.n > 5 %}yes{% endif %}", False, id="block-empty"),
        pytest.param("{{ params.n > 5 }} ", False, id="wrapped-with-space"),
    ],
)
def test_evaluate(condition: str, expected: bool, context: dict[str, Any]) -> None:
    assert templating.evaluate(condition, context) is expected


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        pytest.param("params.nope == 1", "no attribute 'nope'", id="undefined"),
        pytest.param("params.env ==", "syntax error", id="syntax"),
        pytest.param("   ", "condition is empty", id="empty"),
        pytest.param("''.__class__", "not allowed in the sandbox", id="sandbox"),
    ],
)
def test_evaluate_errors(condition: str, message: str, context: dict[str, Any]) -> None:
    with pytest.raises(TemplateError, match=message):
        templating.evaluate(condition, context)


@pytest.mark.parametrize(
    ("text", "expression", "error"),
    [
        pytest.param("{{ params.host }}", False, None, id="ok"),
        pytest.param("plain", False, None, id="plain"),
        pytest.param("{{ params.host }", False, "syntax error", id="unclosed"),
        pytest.param("{% for x in y %}", False, "syntax error", id="unclosed-block"),
        pytest.param("params.n > 1", True, None, id="expression-ok"),
        pytest.param("{{ params.n > 1 }}", True, None, id="wrapped-expression-ok"),
        pytest.param("params.n >", True, "syntax error", id="expression-bad"),
        pytest.param("", True, "condition is empty", id="expression-empty"),
    ],
)
def test_check_syntax(text: str, expression: bool, error: str | None) -> None:
    result = templating.check_syntax(text, expression=expression)
    if error is None:
        assert result is None
    else:
        assert result is not None
        assert error in result


@pytest.mark.parametrize(
    ("text", "expression", "expected"),
    [
        pytest.param("{{ params.host }}", False, {("params", "host")}, id="attr"),
        pytest.param("{{ params['x'] }}", False, {("params", "x")}, id="item"),
        pytest.param(
            "{{ steps.check.output.rc }}-{{ run.id }}",
            False,
            {("steps", "check"), ("run", "id")},
            id="nested-and-two",
        ),
        pytest.param(
            "{% if secrets.token %}{{ params.a | upper }}{% endif %}",
            False,
            {("secrets", "token"), ("params", "a")},
            id="block",
        ),
        pytest.param("steps.b.status == 'failed'", True, {("steps", "b")}, id="expression"),
        pytest.param("{{ other.x }}{{ params[name] }}", False, set(), id="unknown-root-dynamic"),
        pytest.param("{{ params.host", False, set(), id="bad-syntax"),
        pytest.param("plain", False, set(), id="plain"),
    ],
)
def test_references(text: str, expression: bool, expected: set[tuple[str, str]]) -> None:
    assert templating.references(text, expression=expression) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("{{ parms.x }} {{ params.y }}", {"parms"}, id="typo"),
        pytest.param(
            "{% for h in params.hosts %}{{ loop.index }}{{ h | upper }}{% endfor %}",
            set(),
            id="loop-vars-and-filters",
        ),
        pytest.param("{% set y = 1 %}{{ y }}{{ range(3) | list }}", set(), id="set-and-globals"),
        pytest.param("{{ params.x is defined and failure }}", {"failure"}, id="tests"),
    ],
)
def test_unknown_names(text: str, expected: set[str]) -> None:
    assert templating.unknown_names(text) == expected


def test_unknown_names_accepts_extra_known_names() -> None:
    text = "{{ failure.error }}"
    assert templating.unknown_names(text, templating.ROOTS | {"failure"}) == set()
    assert templating.unknown_names("failure.step == 'x'", expression=True) == {"failure"}


@pytest.mark.parametrize(
    ("script", "spliced"),
    [
        pytest.param("echo {{ params.host }}", ["params.host"], id="param"),
        pytest.param("echo {{ params['host'] }}", ["params['host']"], id="param-item"),
        pytest.param("a\n{{ steps.x.output | trim }}", ["steps.x.output | trim"], id="filtered"),
        pytest.param(
            "{{ run.requested_by }} {{ failure.error }}",
            ["run.requested_by", "failure.error"],
            id="two",
        ),
        pytest.param(
            "{{ params.h | quote | upper }}", ["params.h | quote | upper"], id="quote-not-last"
        ),
        pytest.param("{% for h in params.hs %}ssh {{ h }}{% endfor %}", ["h"], id="loop"),
        pytest.param("echo {{ params.host | quote }}", [], id="quoted"),
        pytest.param('echo "$PARAM_HOST"', [], id="env-var"),
        pytest.param("{% if params.force %}--force{% endif %}", [], id="control-block"),
        pytest.param("echo {{ '{{' }} {{ 3 }}", [], id="constants"),
        pytest.param("echo {{ params.host", [], id="syntax-error-reported-elsewhere"),
    ],
)
def test_shell_splices(script: str, spliced: list[str]) -> None:
    assert [s.shown for s in splices.shell_splices(script)] == spliced


@pytest.mark.parametrize(
    ("script", "inside"),
    [
        pytest.param('echo "{{ params.h | quote }}"', ['inside "..." quotes'], id="double"),
        pytest.param("echo '{{ params.h | quote }}'", ["inside '...' quotes"], id="single"),
        pytest.param("echo \\{{ params.h | quote }}", ["right after a backslash"], id="escaped"),
        pytest.param("ls # {{ params.h | quote }}", ["inside a comment"], id="comment"),
        pytest.param(
            "cat <<-'EOF'\n\t{{ params.h | quote }}\n\tEOF\necho {{ params.h | quote }}",
            ["inside a here-document"],
            id="heredoc-then-plain",
        ),
        pytest.param(
            'echo "it\'s" \'a "b\' x#1 $# {{ params.h | quote }} # {{ "{{" }}',
            [],
            id="closed-quotes-and-not-comments",
        ),
        pytest.param(
            '{% if params.x %}echo "{% endif %}{{ params.h | quote }}',
            ['inside "..." quotes'],
            id="quote-opened-in-a-block",
        ),
    ],
)
def test_quote_counts_only_in_plain_shell_code(script: str, inside: list[str]) -> None:
    """Inside quotes, a comment or a here-document the quotes of | quote are text, and
    the value's $(...) or newline would act: refused there."""
    assert [s.inside for s in splices.shell_splices(script)] == inside


@pytest.mark.parametrize("where", ["plain", "double-quoted"])
async def test_quote_in_plain_code_keeps_a_hostile_value_one_word(
    tmp_path: Path, where: str
) -> None:
    pwned = tmp_path / "PWNED"
    value = f"$(touch {pwned})'; touch {pwned}; '\n touch {pwned}"
    script = "printf '%s|' {{ params.h | quote }}"
    if where == "double-quoted":
        script = "printf '%s|' \"{{ params.h | quote }}\""
        assert splices.shell_splices(script)  # refused: this is what it would do
    rendered = templating.render(script, {"params": {"h": value}})
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", rendered, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    if where == "plain":
        assert out.decode() == value + "|" and not pwned.exists()
    else:
        assert pwned.exists()


# --- step ids with hyphens, and ids named like dict methods ---------------------------

IDS_CONTEXT: dict[str, Any] = {
    "params": {"values": 7, "host": "web1"},
    "steps": {
        "patch-web1": {"output": {"rc": 0}, "status": "succeeded", "error": None},
        "approve-prod": {"output": {}, "status": "skipped", "error": None},
        "get": {"output": {"items": [1, 2]}, "status": "failed", "error": "boom"},
        "items": {"output": {}, "status": "succeeded", "error": None},
    },
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        pytest.param("{{ steps.patch-web1.status }}", "succeeded", id="hyphen"),
        pytest.param("{{ steps.patch-web1.output.rc + 1 }}", 1, id="hyphen-native"),
        pytest.param("{{steps.approve-prod.status}}!", "skipped!", id="hyphen-no-spaces"),
        pytest.param(
            "{% if steps.patch-web1.status == 'succeeded' %}ok{% endif %}", "ok", id="block"
        ),
        pytest.param("{{ steps.get.status }}", "failed", id="dict-method-get"),
        pytest.param("{{ steps.items.status }}", "succeeded", id="dict-method-items"),
        pytest.param("{{ steps.get.output.items }}", [1, 2], id="key-items-in-output"),
        pytest.param("{{ params.values }}", 7, id="param-named-values"),
        pytest.param("{{ params.keys() | list }}", ["values", "host"], id="methods-still-work"),
        pytest.param(
            "steps.patch-web1 and {{ 'steps.patch-web1' }}",
            "steps.patch-web1 and steps.patch-web1",
            id="literals-untouched",
        ),
        pytest.param(
            "{# steps.patch-web1 #}{% raw %}{{ steps.patch-web1 }}{% endraw %}",
            "{{ steps.patch-web1 }}",
            id="raw-untouched",
        ),
    ],
)
def test_step_ids_with_hyphens_and_dict_method_names(template: str, expected: Any) -> None:
    assert templating.render(template, IDS_CONTEXT) == expected


@pytest.mark.parametrize(
    "condition",
    [
        "steps.patch-web1.status == 'succeeded'",
        "{{ steps.patch-web1.status == 'succeeded' }}",
        "steps.get.status == 'failed' and steps.items.status == 'succeeded'",
        "steps.approve-prod.status == 'skipped' and params.values == 7",
    ],
)
def test_conditions_read_hyphenated_and_dict_method_ids(condition: str) -> None:
    assert templating.evaluate(condition, IDS_CONTEXT) is True


def test_a_mistyped_hyphenated_id_is_named_whole() -> None:
    with pytest.raises(TemplateError, match="patch-wbe1"):
        templating.render("{{ steps.patch-wbe1.status }}", IDS_CONTEXT)
    assert templating.references("steps.patch-wbe1.status == 'x'", expression=True) == {
        ("steps", "patch-wbe1")
    }
    assert templating.unknown_names("{{ steps.patch-web1.status }}") == set()


def test_a_minus_with_spaces_stays_a_minus() -> None:
    context = {"steps": {"a": {"output": {"n": 5}}}, "params": {"b": 2}}
    assert templating.render("{{ steps.a.output.n - params.b }}", context) == 3


@pytest.mark.parametrize(
    "template",
    [
        pytest.param("{{ steps.get.output.keys }}", id="native"),
        pytest.param("keys: {{ steps.get.output.values }}", id="in-text"),
        pytest.param("{{ steps.get.output['keys'] }}", id="subscript"),
        pytest.param("{{ params.get }}", id="params"),
        pytest.param("{% if steps.items.output.items %}x{% endif %}", id="condition"),
    ],
)
def test_a_dict_method_read_as_a_field_is_a_missing_field(template: str) -> None:
    with pytest.raises(TemplateError, match="'dict object' has no attribute") as excinfo:
        templating.render(template, IDS_CONTEXT)
    assert "bound method" not in str(excinfo.value)


def test_a_dict_method_called_still_works() -> None:
    context = {**IDS_CONTEXT, "alert": {"labels": {"instance": "db1"}}}
    assert templating.render("{{ alert.labels.get('instance', 'localhost') }}", context) == "db1"
    assert templating.render("{{ alert.labels.get('mountpoint', '/tmp') }}", context) == "/tmp"
    assert templating.render("{{ params.items() | list }}", context) == [
        ("values", 7),
        ("host", "web1"),
    ]
    assert templating.render("{{ steps.get.output.keys is defined }}", context) is False
    assert templating.evaluate("steps.get.output.keys() | list == ['items']", context)
