//! One event applied to the views that have not seen it, after the run's
//! cache has observed it (used by the dispatch and by the correction).

use crate::domain::Event;
use crate::error::Result;
use crate::projections::cache::{Cache, Ctx};
use crate::projections::facts::Need;
use crate::projections::registry::View;
use crate::store::Tx;

/// Applies one event at notification `id` to the views whose position is
/// below it, after the cache has observed it.
pub(crate) fn apply_one(
    tx: &mut dyn Tx,
    cache: &mut Cache,
    views: &[View],
    positions: &[i64],
    id: i64,
    ev: &Event,
) -> Result<()> {
    cache.observe(id, ev);
    let mut ctx = Ctx { tx, cache, id };
    // What the views will ask about the event's task, in one statement
    // (known facts are not asked again).
    let need = views
        .iter()
        .zip(positions)
        .filter(|(_, pos)| **pos < id)
        .fold(Need::default(), |need, (view, _)| need.or(view.needs(ev)));
    if need.created || need.job {
        ctx.ensure_tasks(&[ev.originator_id], need)?;
    }
    for (view, pos) in views.iter().zip(positions) {
        if *pos < id {
            view.apply(&mut ctx, ev)?;
        }
    }
    Ok(())
}
