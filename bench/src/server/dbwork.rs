//! How much database work a checkout costs: commits (`pg_stat_database`) and, when the
//! `pg_stat_statements` extension is loaded, statements, counted over one step on the
//! server's database. The bench's own read-model looks are subtracted (one statement and one
//! commit each).

use std::time::Duration;

use sqlx::PgPool;

#[derive(Debug, Clone, Copy)]
pub(super) struct DbWork {
    pub(super) commits: i64,
    pub(super) statements: Option<i64>,
}

impl DbWork {
    /// The counters now. Backends report their counts at most once a second, so this reads
    /// until two readings half a second apart agree (at most a few seconds).
    pub(super) async fn read(pool: &PgPool) -> anyhow::Result<DbWork> {
        let mut last = Self::read_once(pool).await?;
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = Self::read_once(pool).await?;
            if now.commits == last.commits + 1 {
                // Only our own reading committed since: settled.
                return Ok(now);
            }
            last = now;
        }
        Ok(last)
    }

    async fn read_once(pool: &PgPool) -> anyhow::Result<DbWork> {
        let mut conn = pool.acquire().await?;
        sqlx::query("select pg_stat_clear_snapshot()")
            .execute(&mut *conn)
            .await?;
        let commits: i64 = sqlx::query_scalar(
            "select xact_commit from pg_stat_database where datname = current_database()",
        )
        .fetch_one(&mut *conn)
        .await?;
        let loaded: bool = sqlx::query_scalar(
            "select exists(select 1 from pg_extension where extname = 'pg_stat_statements')",
        )
        .fetch_one(&mut *conn)
        .await?;
        let statements = if loaded {
            sqlx::query_scalar::<_, Option<i64>>(
                "select sum(calls)::bigint from pg_stat_statements
                 where dbid = (select oid from pg_database where datname = current_database())",
            )
            .fetch_one(&mut *conn)
            .await
            .ok()
            .flatten()
        } else {
            None
        };
        Ok(DbWork {
            commits,
            statements,
        })
    }

    /// The work per confirmed order between `self` and `after`, less `own` statements the
    /// bench sent itself.
    pub(super) fn per_order(&self, after: &DbWork, own: i64, orders: usize) -> (f64, Option<f64>) {
        let n = orders.max(1) as f64;
        let commits = (after.commits - self.commits - own).max(0) as f64 / n;
        let statements = self
            .statements
            .zip(after.statements)
            .map(|(b, a)| (a - b - own).max(0) as f64 / n);
        (commits, statements)
    }
}
