"""Query limits: depth, aliases, tokens, total cost; introspection only where docs are on.

Depth, aliases and cost are measured by one rule of ours instead of strawberry's
``QueryDepthLimiter`` / ``MaxAliasesLimiter``: those expand every fragment spread anew, so
a 250-token document whose fragments each spread the next one twice keeps them busy for
2^30 steps (tests/integration/test_graphql.py holds that document). Here each fragment
is measured once and its numbers reused wherever it is spread.

Cost: every field costs one per time it can be resolved, and a paginated field multiplies
what lies below it by its ``first`` (its default when absent, its maximum when it is a
variable, because variables are not known while validating). Depth counts nested
selection sets as strawberry does (introspection fields are not counted). Tokens are
capped by strawberry's ``MaxTokensLimiter`` (graphql-core stops parsing past the cap).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from graphql import (
    ASTValidationRule,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLNamedType,
    GraphQLObjectType,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
    get_named_type,
)
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import AddValidationRules, MaxTokensLimiter, SchemaExtension

MAX_DEPTH = 8
MAX_ALIASES = 15
MAX_TOKENS = 2000
MAX_COST = 10_000


@dataclass(frozen=True, slots=True)
class Page:
    """``first`` bounds of a paginated field (the resolvers enforce the same ones)."""

    default: int
    maximum: int


# Paginated fields by (parent type, field): their `first` default and maximum.
PAGES: dict[tuple[str, str], Page] = {
    ("Query", "users"): Page(50, 100),
    ("Query", "mySessions"): Page(50, 100),
    ("Query", "auditEvents"): Page(50, 200),
    ("User", "sessions"): Page(10, 100),
}


class NoIntrospectionRule(NoSchemaIntrospectionCustomRule):
    """graphql-core's rule against ``__schema`` / ``__type``, with a stable code."""

    def report_error(self, error: GraphQLError) -> None:
        error.extensions = {**(error.extensions or {}), "code": "introspection_disabled"}
        super().report_error(error)


@dataclass(frozen=True, slots=True)
class Measure:
    """What a selection set costs: nesting depth, aliases, fields resolved per resolution."""

    depth: int = 0
    aliases: int = 0
    cost: int = 0


class QueryLimitsRule(ValidationRule):
    """Refuses an operation deeper, more aliased or costlier than the limits allow."""

    def __init__(self, context: ValidationContext) -> None:
        super().__init__(context)
        self._schema = context.schema
        self._fragments = {
            node.name.value: node
            for node in context.document.definitions
            if isinstance(node, FragmentDefinitionNode)
        }
        self._measured: dict[str, Measure] = {}
        self._measuring: set[str] = set()
        for node in context.document.definitions:
            if isinstance(node, OperationDefinitionNode):
                root = self._schema.get_root_type(node.operation)
                self._check(node, self._measure(node.selection_set, root))

    def _check(self, node: OperationDefinitionNode, measure: Measure) -> None:
        if measure.depth > MAX_DEPTH:
            self._refuse(node, "query_too_deep", f"The query nests deeper than {MAX_DEPTH}.")
        if measure.aliases > MAX_ALIASES:
            self._refuse(
                node, "too_many_aliases", f"The query uses more than {MAX_ALIASES} aliases."
            )
        if measure.cost > MAX_COST:
            self._refuse(
                node,
                "query_too_costly",
                f"The query may resolve more than {MAX_COST} fields. "
                "Ask for fewer items (`first`) or fewer fields.",
            )

    def _refuse(self, node: OperationDefinitionNode, code: str, message: str) -> None:
        self.report_error(GraphQLError(message, node, extensions={"code": code}))

    def _measure(self, selections: SelectionSetNode, parent: GraphQLNamedType | None) -> Measure:
        depth = aliases = cost = 0
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                inner = self._field(selection, parent)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                target = self._schema.get_type(condition.name.value) if condition else parent
                inner = self._measure(selection.selection_set, target)
            else:
                inner = self._fragment(cast(FragmentSpreadNode, selection))
            depth = max(depth, inner.depth)
            aliases += inner.aliases
            cost += inner.cost
        return Measure(depth, aliases, cost)

    def _field(self, field: FieldNode, parent: GraphQLNamedType | None) -> Measure:
        name = field.name.value
        alias = 1 if field.alias else 0
        if field.selection_set is None:
            return Measure(0, alias, 1)
        definition = parent.fields.get(name) if isinstance(parent, GraphQLObjectType) else None
        child = get_named_type(definition.type) if definition is not None else None
        inner = self._measure(field.selection_set, child)
        page = PAGES.get((parent.name, name)) if parent is not None else None
        times = _first(field, page) if page else 1
        # Introspection fields do not count towards depth (as in strawberry's limiter).
        depth = 0 if name.startswith("__") else 1 + inner.depth
        return Measure(depth, alias + inner.aliases, 1 + times * inner.cost)

    def _fragment(self, spread: FragmentSpreadNode) -> Measure:
        name = spread.name.value
        known = self._measured.get(name)
        if known is not None:
            return known
        fragment = self._fragments.get(name)
        # Unknown fragments and cycles are refused by the specified rules; count nothing.
        if fragment is None or name in self._measuring:
            return Measure()
        self._measuring.add(name)
        target = self._schema.get_type(fragment.type_condition.name.value)
        measured = self._measure(fragment.selection_set, target)
        self._measuring.discard(name)
        self._measured[name] = measured
        return measured


def _first(field: FieldNode, page: Page) -> int:
    for argument in field.arguments or ():
        if argument.name.value == "first":
            value = argument.value
            if isinstance(value, IntValueNode):
                # At least one: a refused `first: 0` must not hide what lies below.
                return max(1, min(int(value.value), page.maximum))
            return page.maximum
    return page.default


def build_limits(*, introspection: bool) -> list[Callable[[], SchemaExtension]]:
    """Factories of the validation extensions (strawberry builds them per request)."""
    rules: list[type[ASTValidationRule]] = [QueryLimitsRule]
    if not introspection:
        rules.append(NoIntrospectionRule)
    return [lambda: MaxTokensLimiter(MAX_TOKENS), lambda: AddValidationRules(rules)]
