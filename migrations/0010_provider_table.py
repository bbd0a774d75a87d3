"""Provider groups from the knowledge base's table: new-IP and warmed-up hourly caps, a daily cap,
the stage; Google Workspace and Microsoft 365 tenants as their own groups; the warm-up's last step
at the plan's goal.

Groups an admin has already changed keep their figures: only a default group whose caps or MX
patterns are still the earlier defaults gets the table's.
"""

from peewee import CharField, IntegerField
from playhouse.migrate import migrate

# name: (earlier hourly default, earlier MX patterns, hourly new, hourly warm, daily, MX patterns now)
_TABLE = {
    "gmail": (
        1000,
        "*.google.com\n*.googlemail.com",
        500,
        5000,
        50000,
        "gmail-smtp-in.l.google.com\n*.gmail-smtp-in.l.google.com",
    ),
    "aol": (500, None, 500, 5000, 50000, None),
    "yahoo": (500, None, 1000, 10000, 100000, None),
    "outlook": (
        1000,
        "*.protection.outlook.com\n*.hotmail.com",
        500,
        3000,
        30000,
        "*.olc.protection.outlook.com\n*.hotmail.com",
    ),
    "icloud": (500, None, 500, 2000, 10000, None),
}
# New groups: (placed after, MX patterns, hourly new, hourly warm, sessions)
_TENANTS = {
    "google-workspace": ("gmail", "*.google.com\n*.googlemail.com", 500, 5000, 5),
    "microsoft-365": ("outlook", "*.protection.outlook.com", 500, 3000, 5),
}
_OLD_PLAN, _NEW_PLAN = (
    "1:1000,4:5000,7:10000,11:25000,15:50000,21:",
    "1:1000,4:5000,7:10000,11:25000,15:50000,21:100000",
)


def up(migrator, db):
    migrate(
        migrator.add_column("provider_group", "hourly_warm", IntegerField(null=True)),
        migrator.add_column("provider_group", "daily_cap", IntegerField(null=True)),
        migrator.add_column("provider_group", "stage", CharField(default="auto")),
    )
    p = db.param
    rows = db.execute_sql(
        'SELECT "id", "name", "hourly_cap", "mx_patterns" FROM "provider_group" ORDER BY "position", "id"'
    ).fetchall()
    if not rows:  # a new database: the defaults are created on first use
        return
    for _id, name, hourly, mx in rows:
        if name not in _TABLE:
            continue
        old_hourly, old_mx, new_hourly, warm, daily, new_mx = _TABLE[name]
        if hourly == old_hourly:
            db.execute_sql(f'UPDATE "provider_group" SET "hourly_cap" = {p} WHERE "id" = {p}', (new_hourly, _id))
        db.execute_sql(
            f'UPDATE "provider_group" SET "hourly_warm" = {p}, "daily_cap" = {p} WHERE "id" = {p}', (warm, daily, _id)
        )
        if old_mx is not None and mx == old_mx:
            db.execute_sql(f'UPDATE "provider_group" SET "mx_patterns" = {p} WHERE "id" = {p}', (new_mx, _id))
    order = [name for _id, name, _h, _m in rows]
    for tenant, (after, mx, hourly, warm, sessions) in _TENANTS.items():
        if tenant in order:
            continue
        order.insert(order.index(after) + 1 if after in order else max(len(order) - 1, 0), tenant)
        db.execute_sql(
            'INSERT INTO "provider_group" ("name", "position", "domain_patterns", "mx_patterns", "hourly_cap", '
            f'"hourly_warm", "session_cap", "throttle_strikes", "throttle_reply", "stage") '
            f"VALUES ({p}, 0, '', {p}, {p}, {p}, {p}, 0, '', 'auto')",
            (tenant, mx, hourly, warm, sessions),
        )
    for position, name in enumerate(order):
        db.execute_sql(f'UPDATE "provider_group" SET "position" = {p} WHERE "name" = {p}', (position, name))
    db.execute_sql(f'UPDATE "warmup_plan" SET "steps" = {p} WHERE "steps" = {p}', (_NEW_PLAN, _OLD_PLAN))
