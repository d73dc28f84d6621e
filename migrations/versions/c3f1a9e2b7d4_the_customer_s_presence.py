"""the customer's presence: the page socket that came last, and when the customer left

Revision ID: c3f1a9e2b7d4
Revises: 5b1e2c7d9a41
Create Date: 2026-11-30 01:15:00

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "c3f1a9e2b7d4"
down_revision = "5b1e2c7d9a41"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("lens_session", schema=None) as batch_op:
        batch_op.add_column(sa.Column("customer_link", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("customer_left_at", sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table("lens_session", schema=None) as batch_op:
        batch_op.drop_column("customer_left_at")
        batch_op.drop_column("customer_link")
