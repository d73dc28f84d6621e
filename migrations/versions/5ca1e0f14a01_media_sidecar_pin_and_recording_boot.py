"""the session's media sidecar, and which sidecar process writes a recording

Revision ID: 5ca1e0f14a01
Revises: c3f1a9e2b7d4
Create Date: 2026-11-30 00:45:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '5ca1e0f14a01'
down_revision = 'c3f1a9e2b7d4'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('lens_session', schema=None) as batch_op:
        batch_op.add_column(sa.Column('media_sidecar', sa.String(length=64), nullable=True))
    with op.batch_alter_table('recording', schema=None) as batch_op:
        batch_op.add_column(sa.Column('media_boot', sa.String(length=32), nullable=True))


def downgrade():
    with op.batch_alter_table('recording', schema=None) as batch_op:
        batch_op.drop_column('media_boot')
    with op.batch_alter_table('lens_session', schema=None) as batch_op:
        batch_op.drop_column('media_sidecar')
