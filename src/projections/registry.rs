//! The one place that names the views: each view's definition (in
//! `views/`) registered under a [`View`], in the canonical order. Everything
//! that works on "every view" (dispatch, tracking, rebuild, correction,
//! verify, the migrations' shape check, the Python models, the CLI) goes
//! through this list.

use crate::domain::Event;
use crate::error::{Error, Result};
use crate::projections::cache::Ctx;
use crate::projections::facts::Need;
use crate::projections::projector::Projector;
use crate::projections::view::ViewSpec;
use crate::projections::views::job_accounting::JobAccounting;
use crate::projections::views::job_progress::JobProgress;
use crate::projections::views::workflow_analytics::WorkflowAnalytics;
use crate::projections::views::workflow_progress::WorkflowProgress;

/// A view, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum View {
    JobAccounting,
    JobProgress,
    WorkflowProgress,
    WorkflowAnalytics,
}

/// What the registry keeps of a view's definition.
struct Entry {
    spec: &'static ViewSpec,
    needs: fn(&Event) -> Need,
    apply: fn(&mut Ctx<'_>, &Event) -> Result<()>,
}

macro_rules! entries {
    ($($def:ty),* $(,)?) => {
        [$(Entry {
            spec: &<$def as crate::projections::view::ViewTable>::SPEC,
            needs: <$def as Projector>::needs,
            apply: <$def as Projector>::apply,
        }),*]
    };
}

/// The definitions, in the order of [`View`].
static ENTRIES: [Entry; 4] = entries![
    JobAccounting,
    JobProgress,
    WorkflowProgress,
    WorkflowAnalytics,
];

impl View {
    pub const ALL: [View; 4] = [
        View::JobAccounting,
        View::JobProgress,
        View::WorkflowProgress,
        View::WorkflowAnalytics,
    ];

    fn entry(self) -> &'static Entry {
        &ENTRIES[self as usize]
    }

    /// The view's definition.
    pub fn spec(self) -> &'static ViewSpec {
        self.entry().spec
    }

    /// The name used in `views=`.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// The reference's class name.
    pub fn class_name(self) -> &'static str {
        self.spec().class_name
    }

    pub fn tracking_table(self) -> &'static str {
        self.spec().tracking_table
    }

    /// The reference's events table of the listener (dropped by BIOMERO's
    /// reset path; biomero_rs never writes it).
    pub fn events_table(self) -> &'static str {
        self.spec().events_table
    }

    pub fn view_table(self) -> &'static str {
        self.spec().table
    }

    /// Accepts `"job_accounting"` or the class name `"JobAccounting"`.
    pub fn parse(name: &str) -> Result<View> {
        View::ALL
            .into_iter()
            .find(|v| v.name() == name || v.class_name() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = View::ALL.iter().map(|v| v.name()).collect();
                Error::value(format!(
                    "views: unknown view {name:?} (known: {})",
                    known.join(", ")
                ))
            })
    }

    /// The facts of the event's task this view will look up.
    pub fn needs(self, event: &Event) -> Need {
        (self.entry().needs)(event)
    }

    /// Applies one event (at notification `ctx.id`) to this view's rows.
    pub fn apply(self, ctx: &mut Ctx<'_>, event: &Event) -> Result<()> {
        (self.entry().apply)(ctx, event)
    }
}

/// Parses a `views=` list; duplicates are dropped, order is the canonical one.
pub fn parse_views<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Vec<View>> {
    let mut views = Vec::new();
    for n in names {
        views.push(View::parse(n)?);
    }
    views.sort();
    views.dedup();
    Ok(views)
}

/// The tracking tables of every view (the store creates them with the
/// events table).
pub fn tracking_tables() -> Vec<&'static str> {
    View::ALL.iter().map(|v| v.tracking_table()).collect()
}
