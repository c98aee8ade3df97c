//! How a view follows the log: the projector of a view table applies each
//! event to its rows through a [`Ctx`]. Each view file implements it next to
//! its table's definition; the registry lists them.

use crate::domain::Event;
use crate::error::Result;
use crate::projections::cache::Ctx;
use crate::projections::facts::Need;
use crate::projections::view::ViewTable;

pub trait Projector: ViewTable {
    /// The facts of the event's task this projector will look up (asked for
    /// every projector at once, in one statement, before any applies it).
    fn needs(_event: &Event) -> Need {
        Need::default()
    }

    /// Applies one event (at notification `ctx.id`) to the view's rows.
    fn apply(ctx: &mut Ctx<'_>, event: &Event) -> Result<()>;
}
