"""the tools' state of a session, and a log line's data

Revision ID: 5b1e2c7d9a41
Revises: 1227d430a628
Create Date: 2026-11-30 01:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '5b1e2c7d9a41'
down_revision = '1227d430a628'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('lens_session', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tools', sa.JSON(), nullable=True))
    with op.batch_alter_table('session_event', schema=None) as batch_op:
        batch_op.add_column(sa.Column('data', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('session_event', schema=None) as batch_op:
        batch_op.drop_column('data')
    with op.batch_alter_table('lens_session', schema=None) as batch_op:
        batch_op.drop_column('tools')
