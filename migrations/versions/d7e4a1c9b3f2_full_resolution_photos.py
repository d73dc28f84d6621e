"""full-resolution photos from the phone's camera, kept beside the snapshots

Revision ID: d7e4a1c9b3f2
Revises: b8513d726b29
Create Date: 2026-11-30 04:20:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'd7e4a1c9b3f2'
down_revision = 'b8513d726b29'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('snapshot', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('source', sa.String(length=16), nullable=False, server_default='video')
        )
        batch_op.add_column(sa.Column('request_id', sa.String(length=32), nullable=True))
        batch_op.create_unique_constraint('uq_snapshot_request_id', ['request_id'])


def downgrade():
    with op.batch_alter_table('snapshot', schema=None) as batch_op:
        batch_op.drop_constraint('uq_snapshot_request_id', type_='unique')
        batch_op.drop_column('request_id')
        batch_op.drop_column('source')
