"""ollama's template data, as Go values: the only things a Go chat template can reach.

The shapes are those of ollama's ``template/template.go`` (its template-facing copies of the
API types) and ``api/types.go``::

    .Messages   []*templateMessage    Role Content Thinking Images ToolCalls ToolName ToolCallID
      .ToolCalls  []templateToolCall  ID Function{Index Name Arguments}
                                      (Arguments: map[string]any, prints as its JSON)
    .Tools      templateTools         (prints as its JSON)
      []templateTool                  Type Items Function{Name Description Parameters}
      .Parameters                     Type Defs Items Required
                                      Properties map[string]ToolProperty (prints as its JSON)
      ToolProperty                    AnyOf Type Items Description Enum Properties
                                      (Type is a PropertyType: prints "string", or "[a b]")

JSON values inside tool calls and schemas follow Go's decoding: objects become
``map[string]any``, arrays ``[]any``, every number a float64. Message images are not carried
(kettle has no vision models yet): ``Images`` is always an empty list.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from kettle.errors import TemplateError
from kettle.templates.gotmpl.gofmt import format_value
from kettle.templates.gotmpl.gojson import marshal, quote_json
from kettle.templates.gotmpl.values import (
    NIL_ANY, FieldSpec, GoList, GoMap, GoStruct, Nil, Ptr, StructType, nil_list,
)


def _stringer_json_or_empty(m: GoMap) -> str:
    return "{}" if m.nil else marshal(m)


def _property_type_string(pt: GoList) -> str:
    if not pt.items:
        return ""
    if len(pt.items) == 1:
        return pt.items[0]
    return format_value(GoList(pt.items, "[]string"))


def _property_type_json(pt: GoList) -> str:
    if len(pt.items) == 1:
        return quote_json(pt.items[0])
    return "null" if pt.nil else "[" + ",".join(quote_json(t) for t in pt.items) + "]"


def _property_type(types: list[str] | None) -> GoList:
    return GoList(list(types or []), "api.PropertyType", types is None,
                  stringer=_property_type_string, marshal=_property_type_json)


def _args_map(items: dict[str, Any] | None) -> GoMap:
    return GoMap(items or {}, "template.templateArgs", items is None, stringer=_stringer_json_or_empty)


PROPERTY = StructType("api.ToolProperty", (
    FieldSpec("AnyOf", "anyOf", True, lambda: nil_list("[]api.ToolProperty")),
    FieldSpec("Type", "type", True, lambda: _property_type(None)),
    FieldSpec("Items", "items", True, lambda: NIL_ANY),
    FieldSpec("Description", "description", True),
    FieldSpec("Enum", "enum", True, lambda: nil_list()),
    FieldSpec("Properties", "properties", True, lambda: Nil("*api.ToolPropertiesMap", "pointer")),
))


def _properties_map(items: dict[str, Any] | None) -> GoMap:
    return GoMap(items or {}, "template.templateProperties", items is None,
                 stringer=_stringer_json_or_empty, zero=PROPERTY.make)


PARAMETERS = StructType("template.templateToolFunctionParameters", (
    FieldSpec("Type", "type"),
    FieldSpec("Defs", "$defs", True, lambda: NIL_ANY),
    FieldSpec("Items", "items", True, lambda: NIL_ANY),
    FieldSpec("Required", "required", True, lambda: nil_list("[]string")),
    FieldSpec("Properties", "properties", False, lambda: _properties_map(None)),
))
TOOL_FUNCTION = StructType("template.templateToolFunction", (
    FieldSpec("Name", "name"),
    FieldSpec("Description", "description"),
    FieldSpec("Parameters", "parameters", False, PARAMETERS.make),
))
TOOL = StructType("template.templateTool", (
    FieldSpec("Type", "type"),
    FieldSpec("Items", "items", True, lambda: NIL_ANY),
    FieldSpec("Function", "function", False, TOOL_FUNCTION.make),
))
TOOL_CALL_FUNCTION = StructType("template.templateToolCallFunction", (
    FieldSpec("Index", zero=lambda: 0),
    FieldSpec("Name"),
    FieldSpec("Arguments", zero=lambda: _args_map(None)),
))
TOOL_CALL = StructType("template.templateToolCall", (
    FieldSpec("ID"),
    FieldSpec("Function", zero=TOOL_CALL_FUNCTION.make),
))
MESSAGE = StructType("template.templateMessage", (
    FieldSpec("Role"),
    FieldSpec("Content"),
    FieldSpec("Thinking"),
    FieldSpec("Images", zero=lambda: nil_list("[]api.ImageData")),
    FieldSpec("ToolCalls", zero=lambda: nil_list("[]template.templateToolCall")),
    FieldSpec("ToolName"),
    FieldSpec("ToolCallID"),
))


def tools_list(tools: list[GoStruct] | None) -> GoList:
    """``templateTools``: prints (and marshals) as the JSON of the list."""
    return GoList(list(tools or []), "template.templateTools", tools is None, stringer=marshal)


# -- Python JSON-like data -> Go values -------------------------------------------------------------
def go_any(x: Any) -> Any:
    """A decoded JSON value as Go's ``any``: numbers are float64, objects map[string]any."""
    if x is None:
        return NIL_ANY
    if isinstance(x, (bool, str)):
        return x
    if isinstance(x, (int, float)):
        return float(x)
    if isinstance(x, Mapping):
        return GoMap({str(k): go_any(v) for k, v in x.items()})
    if isinstance(x, (list, tuple)):
        return GoList([go_any(v) for v in x])
    raise TemplateError(f"unsupported value of type {type(x).__name__} in template data")


def _str(x: Any, what: str) -> str:
    if x is None:
        return ""
    if not isinstance(x, str):
        raise TemplateError(f"{what} must be a string, not {type(x).__name__}")
    return x


def _obj(x: Any, what: str) -> Mapping[str, Any]:
    if x is None:
        return {}
    if not isinstance(x, Mapping):
        raise TemplateError(f"{what} must be an object, not {type(x).__name__}")
    return x


def tool_call(tc: Any) -> GoStruct:
    tc = _obj(tc, "a tool call")
    fn = _obj(tc.get("function"), "a tool call's function")
    args = fn.get("arguments")
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError as exc:
            raise TemplateError(f"tool call arguments are not valid JSON: {exc}") from None
    if args is not None and not isinstance(args, Mapping):
        raise TemplateError("tool call arguments must be a JSON object")
    index = fn.get("index", 0)
    if isinstance(index, bool) or not isinstance(index, int):
        raise TemplateError("a tool call's index must be an integer")
    arguments = None if args is None else {str(k): go_any(v) for k, v in args.items()}
    return TOOL_CALL.make(ID=_str(tc.get("id"), "a tool call id"), Function=TOOL_CALL_FUNCTION.make(
        Index=index, Name=_str(fn.get("name"), "a tool call's name"), Arguments=_args_map(arguments)))


def message(m: Any) -> Ptr:
    m = _obj(m, "a message")
    calls = m.get("tool_calls")
    if calls is not None and not isinstance(calls, Sequence):
        raise TemplateError("tool_calls must be a list")
    return Ptr(MESSAGE.make(
        Role=_str(m.get("role"), "a message role").lower(),
        Content=_str(m.get("content"), "message content"),
        Thinking=_str(m.get("thinking"), "message thinking"),
        ToolCalls=GoList([tool_call(c) for c in calls], "[]template.templateToolCall")
        if calls else nil_list("[]template.templateToolCall"),
        ToolName=_str(m.get("tool_name"), "tool_name"),
        ToolCallID=_str(m.get("tool_call_id"), "tool_call_id"),
    ))


def tool_property(p: Any) -> GoStruct:
    p = _obj(p, "a tool parameter property")
    t = p.get("type")
    types = [t] if isinstance(t, str) else t
    if types is not None and not (isinstance(types, list) and all(isinstance(x, str) for x in types)):
        raise TemplateError("a property type must be a string or a list of strings")
    any_of = p.get("anyOf")
    enum = p.get("enum")
    nested = p.get("properties")
    return PROPERTY.make(
        AnyOf=GoList([tool_property(x) for x in any_of], "[]api.ToolProperty") if any_of
        else nil_list("[]api.ToolProperty"),
        Type=_property_type(types),
        Items=go_any(p.get("items")),
        Description=_str(p.get("description"), "a property description"),
        Enum=GoList([go_any(x) for x in enum]) if enum else nil_list(),
        Properties=GoMap({k: tool_property(v) for k, v in _obj(nested, "properties").items()},
                         "*api.ToolPropertiesMap", ordered=True) if nested is not None
        else Nil("*api.ToolPropertiesMap", "pointer"),
    )


def tool(t: Any) -> GoStruct:
    t = _obj(t, "a tool")
    fn = _obj(t.get("function"), "a tool's function")
    params = _obj(fn.get("parameters"), "a tool's parameters")
    props = params.get("properties")
    required = params.get("required")
    if required is not None and not (isinstance(required, list) and all(isinstance(x, str) for x in required)):
        raise TemplateError("a tool's required list must hold strings")
    return TOOL.make(
        Type=_str(t.get("type"), "a tool type"),
        Items=go_any(t.get("items")),
        Function=TOOL_FUNCTION.make(
            Name=_str(fn.get("name"), "a tool name"),
            Description=_str(fn.get("description"), "a tool description"),
            Parameters=PARAMETERS.make(
                Type=_str(params.get("type"), "a parameters type"),
                Defs=go_any(params.get("$defs")),
                Items=go_any(params.get("items")),
                Required=GoList(list(required), "[]string") if required else nil_list("[]string"),
                Properties=_properties_map(None if props is None else {
                    str(k): tool_property(v) for k, v in _obj(props, "properties").items()}),
            ),
        ),
    )
