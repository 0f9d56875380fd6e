"""alembic environment: runs migrations on the connection streamd.registry.schema hands over."""

from alembic import context

from streamd.registry.models import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
