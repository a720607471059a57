"""Write fields; each checks like its REST route, calls the same (audited) service."""

from __future__ import annotations

import uuid

import strawberry

from keyturn.api.graphql.context import GraphQLInfo
from keyturn.api.graphql.fields import mutation
from keyturn.api.graphql.inputs import check_name
from keyturn.api.graphql.types import User


@strawberry.type
class Mutation:
    """Nullable like the Query root fields: one refused mutation is null with its error
    entry, and the others in the same document keep their results."""

    @mutation("Change my display name (`PATCH /v1/me`) [me:write].")
    async def update_me(
        self, info: GraphQLInfo, name: str | None = strawberry.UNSET
    ) -> User | None:
        principal = await info.context.with_scope("me:write")
        services = info.context.services
        if name is strawberry.UNSET:
            # Like a PATCH without the field: nothing changes.
            return User.of(await services.users.me(principal))
        return User.of(await services.users.update_me(principal, name=check_name(name)))

    @mutation("End one of my sessions [sessions:write].")
    async def revoke_session(self, info: GraphQLInfo, id: uuid.UUID) -> bool | None:
        principal = await info.context.with_scope("sessions:write")
        await info.context.services.sessions.end(principal, id, info.context.client)
        return True

    @mutation("Give a user a role [roles:write].")
    async def assign_role(self, info: GraphQLInfo, user_id: uuid.UUID, role: str) -> bool | None:
        principal = await info.context.with_permission("roles:write")
        await info.context.services.roles.assign(principal, user_id, role, info.context.client)
        return True

    @mutation("Take a role from a user [roles:write].")
    async def remove_role(self, info: GraphQLInfo, user_id: uuid.UUID, role: str) -> bool | None:
        principal = await info.context.with_permission("roles:write")
        await info.context.services.roles.unassign(principal, user_id, role, info.context.client)
        return True

    @mutation("Lock a user until unlocked; ends their sessions [users:write].")
    async def lock_user(self, info: GraphQLInfo, user_id: uuid.UUID) -> bool | None:
        principal = await info.context.with_permission("users:write")
        await info.context.services.admin_users.lock_user(principal, user_id, info.context.client)
        return True

    @mutation("Lift a lock [users:write].")
    async def unlock_user(self, info: GraphQLInfo, user_id: uuid.UUID) -> bool | None:
        principal = await info.context.with_permission("users:write")
        await info.context.services.admin_users.unlock_user(principal, user_id, info.context.client)
        return True
