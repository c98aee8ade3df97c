//! The four view projectors against docs/projections.md, through the Tracker and
//! the read-side queries. Every scenario runs on a fresh SQLite file and, when
//! a Postgres server is reachable at 127.0.0.1:5432 (user postgres, trust
//! auth), on a freshly created Postgres database as well.
//!
//! After each scenario the views are rebuilt from a copy of the log into a new
//! SQLite database and compared row by row with the live ones: a view row is
//! a function of the event log alone.

use biomero_rs::domain::{Aggregate, Event, Payload, Upcasters, Value};
use biomero_rs::projections::views::job_accounting::{self, JobViewRow};
use biomero_rs::projections::views::job_progress::{self, JobProgressRow};
use biomero_rs::projections::views::workflow_analytics::{self, TaskExecutionRow};
use biomero_rs::projections::views::workflow_progress::{self, WorkflowProgressRow};
use biomero_rs::projections::{self, View};
use biomero_rs::store::{self, StoredEvent, Tx};
use biomero_rs::Tracker;
use chrono::{DateTime, NaiveDateTime, Utc};
use uuid::Uuid;

mod common;
use common::Db;

on_both_backends!(
    job_accounting_rows_and_get_jobs,
    job_ids_the_views_cannot_hold,
    job_progress_follows_the_latest_job,
    workflow_progress_status_mapping,
    workflow_progress_interpolation,
    workflow_progress_main_task_name,
    workflow_progress_import_results,
    workflow_analytics_rows,
    analytics_queries,
    writers_without_views_and_two_trackers,
    fewer_views_then_catch_up,
    values_from_old_stores,
);

fn open(url: &str) -> Tracker {
    Tracker::open(Some(url), View::ALL.to_vec()).expect("open tracker")
}

fn read<T>(t: &Tracker, mut f: impl FnMut(&mut dyn Tx) -> biomero_rs::Result<T>) -> T {
    store::read_tx(t.store().as_ref(), |tx| f(tx)).expect("read")
}

fn s(text: &str) -> Value {
    Value::Str(text.into())
}

fn naive(t: DateTime<Utc>) -> NaiveDateTime {
    t.naive_utc()
}

fn workflow(t: &Tracker, name: &str, user: i64, group: i64) -> Uuid {
    t.initiate_workflow(name.into(), s("a description"), user, group)
        .expect("initiate")
}

fn task(t: &Tracker, wf: Uuid, name: &str) -> Uuid {
    t.add_task_to_workflow(
        wf,
        name.into(),
        s("1.0"),
        Value::Dict(vec![]),
        Value::Dict(vec![]),
    )
    .expect("add task")
}

fn wf_row(t: &Tracker, wf: Uuid) -> WorkflowProgressRow {
    read(t, |tx| workflow_progress::get_workflow(tx, wf)).expect("workflow row")
}

fn wf_state(t: &Tracker, wf: Uuid) -> (Option<String>, Option<String>) {
    let r = wf_row(t, wf);
    (r.status, r.progress)
}

fn st(status: &str, progress: &str) -> (Option<String>, Option<String>) {
    (Some(status.into()), Some(progress.into()))
}

fn task_row(t: &Tracker, task: Uuid) -> TaskExecutionRow {
    read(t, |tx| workflow_analytics::get_task_execution(tx, task)).expect("task row")
}

fn created_on(t: &Tracker, id: Uuid) -> DateTime<Utc> {
    match t.get(id).expect("aggregate") {
        Aggregate::WorkflowRun(w) => w.created_on,
        Aggregate::Task(t) => t.created_on,
    }
}

fn modified_on(t: &Tracker, id: Uuid) -> DateTime<Utc> {
    match t.get(id).expect("aggregate") {
        Aggregate::WorkflowRun(w) => w.modified_on,
        Aggregate::Task(t) => t.modified_on,
    }
}

/// Appends events to the log without running any projector (as a writer
/// without listeners would).
fn append_raw(t: &Tracker, events: &[Event]) {
    let stored: Vec<StoredEvent> = events
        .iter()
        .map(|e| StoredEvent {
            originator_id: e.originator_id,
            originator_version: e.originator_version,
            topic: e.topic().to_owned(),
            state: e.encode_state(Upcasters::standard()),
        })
        .collect();
    store::write_tx(t.store().as_ref(), |tx| tx.append(&stored)).expect("append");
}

fn event(id: Uuid, version: i64, at: DateTime<Utc>, payload: Payload) -> Event {
    Event {
        originator_id: id,
        originator_version: version,
        timestamp: at,
        payload,
    }
}

fn ts(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn tables(t: &Tracker) -> common::Tables {
    read(t, common::tables_in)
}

fn positions(t: &Tracker) -> Vec<i64> {
    read(t, |tx| {
        View::ALL
            .iter()
            .map(|v| projections::position(tx, *v))
            .collect()
    })
}

fn max_id(t: &Tracker) -> i64 {
    read(t, |tx| tx.max_notification_id())
}

/// Copies the log into a fresh SQLite database, projects it there from
/// scratch and checks that every view table equals the live one.
fn assert_rebuild_matches(t: &Tracker) {
    assert_eq!(
        positions(t),
        vec![max_id(t); 4],
        "every view is at the end of the log"
    );
    let log = t.select(1, 1_000_000).expect("select");
    let copy = Db::sqlite();
    let bare = Tracker::open(Some(&copy.url), vec![]).expect("open copy");
    let stored: Vec<StoredEvent> = log.into_iter().map(|n| n.event).collect();
    store::write_tx(bare.store().as_ref(), |tx| tx.append(&stored)).expect("copy log");
    drop(bare);
    let rebuilt = open(&copy.url);
    assert_eq!(
        tables(&rebuilt),
        tables(t),
        "a rebuild over the log gives the live rows"
    );
    assert_eq!(positions(&rebuilt), vec![max_id(&rebuilt); 4]);
}

// ---------------------------------------------------------------- scenarios

fn job_accounting_rows_and_get_jobs(url: &str) {
    let t = open(url);
    let wf = workflow(&t, "wf", 3, 7);
    let t1 = task(&t, wf, "cellpose");
    t.add_job_id(t1, "777".into()).unwrap();
    t.add_job_id(t1, "900".into()).unwrap();
    t.add_job_id(t1, " 100 ".into()).unwrap();

    let wf2 = workflow(&t, "wf2", 5, 7);
    let t2 = task(&t, wf2, "stardist");
    t.add_job_id(t2, "555".into()).unwrap();

    assert_eq!(
        read(&t, |tx| job_accounting::get_jobs(tx, None, None)),
        vec![(Some(3), vec![100, 777, 900]), (Some(5), vec![555])],
    );
    assert_eq!(
        read(&t, |tx| job_accounting::get_jobs(tx, Some(3), None)),
        vec![(Some(3), vec![100, 777, 900])]
    );
    assert_eq!(
        read(&t, |tx| job_accounting::get_jobs(tx, None, Some(7))),
        vec![(None, vec![100, 555, 777, 900])]
    );
    assert_eq!(
        read(&t, |tx| job_accounting::get_jobs(tx, Some(5), Some(7))),
        vec![(Some(5), vec![555])]
    );
    assert_eq!(
        read(&t, |tx| job_accounting::get_jobs(tx, Some(4), None)),
        vec![(Some(4), vec![])]
    );
    assert_eq!(
        read(&t, |tx| job_accounting::get_jobs(tx, Some(1 << 40), None)),
        vec![(Some(1 << 40), vec![])]
    );
    assert_eq!(
        read(&t, |tx| job_accounting::get_task_id(tx, 777)),
        Some(t1)
    );
    assert_eq!(read(&t, |tx| job_accounting::get_task_id(tx, 12)), None);
    assert_eq!(
        read(&t, |tx| job_accounting::get_task_id(tx, 1 << 40)),
        None
    );

    // A recycled Slurm id overwrites the old row.
    t.add_job_id(t2, "777".into()).unwrap();
    assert_eq!(
        read(&t, |tx| job_accounting::get_job(tx, 777)),
        Some(JobViewRow {
            slurm_job_id: 777,
            user: 5,
            group: 7,
            task_id: Some(t2)
        })
    );
    assert_eq!(
        read(&t, |tx| job_accounting::get_jobs(tx, None, None)),
        vec![(Some(3), vec![100, 900]), (Some(5), vec![555, 777])],
    );

    // A task whose workflow never added it: no row, no error.
    let orphan_wf = workflow(&t, "orphan", 9, 9);
    let orphan = Uuid::new_v4();
    append_raw(
        &t,
        &[event(
            orphan,
            0,
            Utc::now(),
            Payload::TaskCreated {
                workflow_id: orphan_wf,
                task_name: s("x"),
                task_version: Value::Null,
                input_data: Value::Null,
                params: Value::Null,
            },
        )],
    );
    t.add_job_id(orphan, "4242".into()).unwrap();
    assert_eq!(read(&t, |tx| job_accounting::get_job(tx, 4242)), None);
    assert_rebuild_matches(&t);
}

fn job_ids_the_views_cannot_hold(url: &str) {
    let t = open(url);
    let wf = workflow(&t, "wf", 3, 7);
    let t1 = task(&t, wf, "cellpose");
    for bad in [
        "12345_7",
        "1_2",
        "2147483648",
        "-2147483649",
        "abc",
        "",
        "0x10",
    ] {
        t.add_job_id(t1, bad.into()).expect("the command succeeds");
        t.update_task_status(t1, s("RUNNING"))
            .expect("the command succeeds");
    }
    assert_eq!(tables(&t).jobs, vec![]);
    assert_eq!(tables(&t).progress, vec![]);
    match t.get(t1).unwrap() {
        Aggregate::Task(task) => assert_eq!(task.job_ids.len(), 7, "every event is stored"),
        other => panic!("{other:?}"),
    }
    t.add_job_id(t1, "2147483647".into()).unwrap();
    t.update_task_status(t1, s("RUNNING")).unwrap();
    assert_eq!(
        read(&t, |tx| job_accounting::get_task_id(tx, 2147483647)),
        Some(t1)
    );
    assert_eq!(
        read(&t, |tx| job_progress::get_job_progress(tx, 2147483647)),
        Some(JobProgressRow {
            slurm_job_id: 2147483647,
            status: "RUNNING".into(),
            progress: None
        })
    );
    assert_rebuild_matches(&t);
}

fn job_progress_follows_the_latest_job(url: &str) {
    let t = open(url);
    let wf = workflow(&t, "wf", 3, 7);
    let t1 = task(&t, wf, "cellpose");
    // No job yet: nothing to write.
    t.update_task_status(t1, s("PENDING")).unwrap();
    t.update_task_progress(t1, s("5%")).unwrap();
    assert_eq!(tables(&t).progress, vec![]);

    t.add_job_id(t1, "777".into()).unwrap();
    assert_eq!(
        tables(&t).progress,
        vec![],
        "JobIdAdded alone writes no row"
    );
    t.update_task_progress(t1, s("10%")).unwrap();
    let row = |j| read(&t, |tx| job_progress::get_job_progress(tx, j));
    assert_eq!(
        row(777),
        Some(JobProgressRow {
            slurm_job_id: 777,
            status: "UNKNOWN".into(),
            progress: Some("10%".into())
        })
    );
    t.update_task_status(t1, s("RUNNING")).unwrap();
    assert_eq!(
        row(777),
        Some(JobProgressRow {
            slurm_job_id: 777,
            status: "RUNNING".into(),
            progress: Some("10%".into())
        })
    );

    // The latest job wins.
    t.add_job_id(t1, "778".into()).unwrap();
    t.update_task_status(t1, s("COMPLETED")).unwrap();
    assert_eq!(
        row(778),
        Some(JobProgressRow {
            slurm_job_id: 778,
            status: "COMPLETED".into(),
            progress: None
        })
    );
    assert_eq!(row(777).unwrap().status, "RUNNING");

    // A latest job id the view cannot hold: no row, the older job untouched.
    t.add_job_id(t1, "778_1".into()).unwrap();
    t.update_task_status(t1, s("FAILED")).unwrap();
    t.update_task_progress(t1, s("99%")).unwrap();
    assert_eq!(
        row(778),
        Some(JobProgressRow {
            slurm_job_id: 778,
            status: "COMPLETED".into(),
            progress: None
        })
    );

    // A recycled job id keeps the other column.
    let t2 = task(&t, wf, "other");
    t.add_job_id(t2, "777".into()).unwrap();
    t.update_task_status(t2, s("PENDING")).unwrap();
    assert_eq!(
        row(777),
        Some(JobProgressRow {
            slurm_job_id: 777,
            status: "PENDING".into(),
            progress: Some("10%".into())
        })
    );
    assert_rebuild_matches(&t);
}

fn workflow_progress_status_mapping(url: &str) {
    let t = open(url);
    let wf = workflow(&t, "My workflow", 3, 7);
    assert_eq!(
        wf_row(&t, wf),
        WorkflowProgressRow {
            workflow_id: wf,
            status: Some("INITIALIZING".into()),
            progress: Some("0%".into()),
            user: Some(3),
            group: Some(7),
            name: Some("My workflow".into()),
            task: None,
            main_task_name: None,
            start_time: naive(created_on(&t, wf)),
        }
    );

    // TaskAdded writes `task` and main_task_name at once.
    let transfer = task(&t, wf, "_SLURM_Image_Transfer.py");
    let r = wf_row(&t, wf);
    assert_eq!(r.task.as_deref(), Some("_SLURM_Image_Transfer.py"));
    assert_eq!(
        r.main_task_name.as_deref(),
        Some("_SLURM_Image_Transfer.py")
    );
    assert_eq!(
        wf_state(&t, wf),
        st("INITIALIZING", "0%"),
        "TaskAdded keeps status and progress"
    );

    t.update_task_status(transfer, s("RUNNING")).unwrap();
    assert_eq!(wf_state(&t, wf), st("TRANSFERRING", "5%"));

    let convert = task(&t, wf, "Convert_ZARR_to_TIFF.py");
    t.update_task_status(convert, s("x")).unwrap();
    assert_eq!(wf_state(&t, wf), st("CONVERTING", "25%"));

    let run = task(&t, wf, "SLURM_Run_Workflow.py");
    t.update_task_status(run, s("whatever")).unwrap();
    assert_eq!(wf_state(&t, wf), st("RUNNING", "50%"));

    let main = task(&t, wf, "cellpose");
    t.update_task_status(main, s("PENDING")).unwrap();
    assert_eq!(wf_state(&t, wf), st("JOB_PENDING", "50%"));

    let get = task(&t, wf, "SLURM_Get_Results.py");
    t.update_task_status(get, s("RETRIEVING")).unwrap();
    assert_eq!(wf_state(&t, wf), st("RETRIEVING", "90%"));
    t.update_task_status(get, s("POSTPROCESSING")).unwrap();
    assert_eq!(wf_state(&t, wf), st("POSTPROCESSING", "95%"));
    t.update_task_status(get, s("DONE")).unwrap();
    assert_eq!(wf_state(&t, wf), st("RETRIEVING", "90%"));

    // Lower-casing of the task name.
    let transfer2 = task(&t, wf, "_slurm_IMAGE_transfer.PY");
    t.update_task_status(transfer2, s("RUNNING")).unwrap();
    assert_eq!(wf_state(&t, wf), st("TRANSFERRING", "5%"));

    // Task events that change no workflow column.
    t.start_task(main).unwrap();
    t.complete_task(main, s("ok")).unwrap();
    t.add_result(main, Value::Dict(vec![("command".into(), s("ls"))]))
        .unwrap();
    assert_eq!(wf_state(&t, wf), st("TRANSFERRING", "5%"));

    t.start_workflow(wf).unwrap();
    assert_eq!(wf_state(&t, wf), st("TRANSFERRING", "5%"));
    t.complete_workflow(wf).unwrap();
    assert_eq!(wf_state(&t, wf), st("DONE", "100%"));

    // WorkflowFailed keeps the progress.
    let wf2 = workflow(&t, "failing", 3, 8);
    let c2 = task(&t, wf2, "convert_x");
    t.update_task_status(c2, s("RUNNING")).unwrap();
    t.fail_workflow(wf2, s("boom")).unwrap();
    assert_eq!(wf_state(&t, wf2), st("FAILED", "25%"));

    // A status that is not a str: the generic branch cannot prefix it.
    let wf3 = workflow(&t, "odd", 3, 8);
    let g3 = task(&t, wf3, "generic");
    t.update_task_status(g3, Value::Int(5)).unwrap();
    assert_eq!(wf_state(&t, wf3), st("INITIALIZING", "0%"));
    assert_eq!(task_row(&t, g3).status, "5");

    // list_workflows: newest first, with filters.
    let all: Vec<Uuid> = read(&t, |tx| workflow_progress::list_workflows(tx, None, None))
        .iter()
        .map(|r| r.workflow_id)
        .collect();
    assert_eq!(all, vec![wf3, wf2, wf]);
    let g8: Vec<Uuid> = read(&t, |tx| {
        workflow_progress::list_workflows(tx, Some(3), Some(8))
    })
    .iter()
    .map(|r| r.workflow_id)
    .collect();
    assert_eq!(g8, vec![wf3, wf2]);
    assert!(read(&t, |tx| workflow_progress::list_workflows(
        tx,
        Some(4),
        None
    ))
    .is_empty());
    assert!(read(&t, |tx| workflow_progress::list_workflows(
        tx,
        None,
        Some(1 << 40)
    ))
    .is_empty());
    assert_eq!(
        read(&t, |tx| workflow_progress::get_workflow(tx, Uuid::new_v4())),
        None
    );
    assert_rebuild_matches(&t);
}

fn workflow_progress_interpolation(url: &str) {
    let t = open(url);
    let wf = workflow(&t, "wf", 3, 7);
    let a = task(&t, wf, "cellpose");
    let b = task(&t, wf, "stardist");

    t.update_task_status(a, s("RUNNING")).unwrap();
    assert_eq!(
        wf_state(&t, wf),
        st("JOB_RUNNING", "50%"),
        "no task progress yet"
    );

    t.update_task_progress(a, s("43%")).unwrap();
    assert_eq!(
        wf_state(&t, wf),
        st("JOB_RUNNING", "50%"),
        "ProgressUpdated alone changes no column"
    );
    t.update_task_status(a, s("RUNNING")).unwrap();
    assert_eq!(wf_state(&t, wf), st("JOB_RUNNING", "67.2%"));

    t.update_task_progress(a, s("50%")).unwrap();
    t.update_task_status(a, s("RUNNING")).unwrap();
    assert_eq!(wf_state(&t, wf), st("JOB_RUNNING", "70.0%"));

    // The latest progress of any task of the workflow.
    t.update_task_progress(b, s("0")).unwrap();
    t.update_task_status(a, s("COMPLETING")).unwrap();
    assert_eq!(wf_state(&t, wf), st("JOB_COMPLETING", "50.0%"));
    t.update_task_progress(a, s(" 100 %")).unwrap();
    t.update_task_status(b, s("RUNNING")).unwrap();
    assert_eq!(wf_state(&t, wf), st("JOB_RUNNING", "90.0%"));

    // Where int() fails the progress stays "50%".
    t.update_task_progress(a, s("43.5%")).unwrap();
    t.update_task_status(a, s("RUNNING")).unwrap();
    assert_eq!(wf_state(&t, wf), st("JOB_RUNNING", "50%"));
    t.update_task_progress(a, Value::Int(43)).unwrap();
    t.update_task_status(a, s("RUNNING")).unwrap();
    assert_eq!(wf_state(&t, wf), st("JOB_RUNNING", "50%"));

    // An empty or None progress counts as unset.
    t.update_task_progress(a, s("")).unwrap();
    t.update_task_status(a, s("RUNNING")).unwrap();
    assert_eq!(wf_state(&t, wf), st("JOB_RUNNING", "50%"));
    t.update_task_progress(a, s("1_0%")).unwrap();
    t.update_task_status(a, s("RUNNING")).unwrap();
    assert_eq!(wf_state(&t, wf), st("JOB_RUNNING", "54.0%"));
    t.update_task_progress(a, Value::Null).unwrap();
    t.update_task_status(a, s("RUNNING")).unwrap();
    assert_eq!(wf_state(&t, wf), st("JOB_RUNNING", "50%"));

    // Another workflow's progress does not count.
    let other = workflow(&t, "other", 3, 7);
    let c = task(&t, other, "cellpose");
    t.update_task_progress(c, s("80%")).unwrap();
    t.update_task_status(a, s("RUNNING")).unwrap();
    assert_eq!(wf_state(&t, wf), st("JOB_RUNNING", "50%"));
    t.update_task_status(c, s("RUNNING")).unwrap();
    assert_eq!(wf_state(&t, other), st("JOB_RUNNING", "82.0%"));
    assert_rebuild_matches(&t);
}

fn workflow_progress_main_task_name(url: &str) {
    let t = open(url);
    let main_of = |wf| wf_row(&t, wf).main_task_name;
    let task_of = |wf| wf_row(&t, wf).task;

    let wf = workflow(&t, "wf", 3, 7);
    task(&t, wf, "_SLURM_Image_Transfer.py");
    task(&t, wf, "convert_zarr");
    assert_eq!(
        main_of(wf).as_deref(),
        Some("convert_zarr"),
        "no main task: the latest task"
    );
    task(&t, wf, "SLURM_Run_Workflow.py");
    assert_eq!(main_of(wf).as_deref(), Some("SLURM_Run_Workflow.py"));
    task(&t, wf, "CellExpansion");
    assert_eq!(
        main_of(wf).as_deref(),
        Some("CellExpansion"),
        "original case kept"
    );
    task(&t, wf, "Second_Main");
    task(&t, wf, "SLURM_Get_Results.py");
    assert_eq!(
        main_of(wf).as_deref(),
        Some("CellExpansion"),
        "the first main task wins"
    );
    assert_eq!(task_of(wf).as_deref(), Some("SLURM_Get_Results.py"));

    let wf2 = workflow(&t, "wf2", 3, 7);
    task(&t, wf2, "Cellpose");
    task(&t, wf2, "_SLURM_Image_Transfer.py");
    assert_eq!(main_of(wf2).as_deref(), Some("Cellpose"));
    assert_eq!(task_of(wf2).as_deref(), Some("_SLURM_Image_Transfer.py"));
    assert_rebuild_matches(&t);
}

fn workflow_progress_import_results(url: &str) {
    let t = open(url);
    let wf = workflow(&t, "wf", 3, 7);
    let imp = task(&t, wf, "SLURM_Import_Results.py");
    for (status, expected) in [
        ("IMPORTING", st("IMPORTING", "90%")),
        ("IMPORTED", st("IMPORTED", "90%")),
        ("INITIALIZING", st("INITIALIZING", "90%")),
        ("TRANSFERRING", st("TRANSFERRING", "90%")),
        ("CONVERTING", st("CONVERTING", "90%")),
        ("RETRIEVING", st("RETRIEVING", "90%")),
        ("DONE", st("DONE", "90%")),
        ("FAILED", st("FAILED", "90%")),
        ("RUNNING", st("RUNNING", "90%")),
        ("JOB_STATUS", st("JOB_", "90%")),
        ("POSTPROCESSING", st("POSTPROCESSING", "95%")),
        ("something else", st("something else", "90%")),
        ("importing", st("importing", "90%")),
    ] {
        t.update_task_status(imp, s(status)).unwrap();
        assert_eq!(wf_state(&t, wf), expected, "status {status:?}");
    }
    // Not a str: the reference cannot map it; the row stays.
    t.update_task_status(imp, Value::Null).unwrap();
    assert_eq!(wf_state(&t, wf), st("importing", "90%"));
    assert_rebuild_matches(&t);
}

fn workflow_analytics_rows(url: &str) {
    let t = open(url);
    let wf = workflow(&t, "wf", 3, 7);
    let a = task(&t, wf, "cellpose");
    let created = naive(created_on(&t, a));
    assert_eq!(
        task_row(&t, a),
        TaskExecutionRow {
            task_id: a,
            task_name: "cellpose".into(),
            task_version: Some("1.0".into()),
            user_id: Some(3),
            group_id: Some(7),
            status: "CREATED".into(),
            start_time: created,
            end_time: None,
            error_type: None,
            workflow_id: Some(wf),
        },
        "TaskAdded writes user_id/group_id at once; TaskCreated the workflow"
    );
    t.start_task(a).unwrap();
    assert_eq!(
        task_row(&t, a).status,
        "CREATED",
        "TaskStarted changes nothing"
    );
    t.update_task_status(a, s("RUNNING")).unwrap();
    assert_eq!(task_row(&t, a).status, "RUNNING");
    t.complete_task(a, s("done")).unwrap();
    let r = task_row(&t, a);
    assert_eq!(
        (r.status.as_str(), r.end_time),
        ("RUNNING", Some(naive(modified_on(&t, a))))
    );

    let b = t
        .add_task_to_workflow(wf, "stardist".into(), Value::Null, Value::Null, Value::Null)
        .unwrap();
    t.fail_task(b, s("OOM")).unwrap();
    let r = task_row(&t, b);
    assert_eq!(r.task_version, None);
    assert_eq!(r.error_type.as_deref(), Some("OOM"));
    assert_eq!(r.end_time, Some(naive(modified_on(&t, b))));
    assert_eq!(r.status, "CREATED");

    // A numeric version is stored as its text.
    let c = t
        .add_task_to_workflow(wf, "v".into(), Value::Float(2.0), Value::Null, Value::Null)
        .unwrap();
    assert_eq!(task_row(&t, c).task_version.as_deref(), Some("2.0"));
    assert_rebuild_matches(&t);
}

fn analytics_queries(url: &str) {
    let t = open(url);
    // Workflows and tasks with chosen timestamps, appended without
    // projectors, then caught up.
    let mut events = Vec::new();
    let mut add_wf = |user: i64, group: i64| {
        let id = Uuid::new_v4();
        events.push(event(
            id,
            0,
            ts("2024-03-01T09:00:00+00:00"),
            Payload::WorkflowInitiated {
                name: s("w"),
                description: Value::Null,
                user: user.into(),
                group: group.into(),
            },
        ));
        id
    };
    let w1 = add_wf(3, 7);
    let w2 = add_wf(4, 7);
    let w3 = add_wf(4, 8);
    let mut wf_versions = std::collections::HashMap::from([(w1, 0), (w2, 0), (w3, 0)]);
    // (workflow, name, version, start, Some((end, error message)))
    type Spec<'a> = (
        Uuid,
        &'a str,
        Value,
        &'a str,
        Option<(&'a str, Option<&'a str>)>,
    );
    let specs: [Spec; 6] = [
        (
            w1,
            "cellpose",
            s("1.0"),
            "2024-03-01T10:00:00.250000+00:00",
            Some(("2024-03-01T10:00:01.750000+00:00", None)),
        ),
        (
            w1,
            "cellpose",
            s("1.0"),
            "2024-03-01T23:59:59+00:00",
            Some(("2024-03-02T00:00:01.250000+00:00", Some("OOM"))),
        ),
        (
            w2,
            "cellpose",
            s("1.0"),
            "2024-03-02T08:00:00+00:00",
            Some(("2024-03-02T08:00:03.000001+00:00", Some("OOM"))),
        ),
        (w2, "cellpose", s("2.0"), "2024-03-02T09:00:00+00:00", None),
        (
            w3,
            "stardist",
            Value::Null,
            "2024-03-03T09:00:00+00:00",
            Some(("2024-03-03T09:01:00+00:00", Some("Timeout"))),
        ),
        (w3, "cellpose", s("1.0"), "2024-03-03T09:00:00+00:00", None),
    ];
    for (wf, name, version, start, end) in specs {
        let id = Uuid::new_v4();
        events.push(event(
            id,
            0,
            ts(start),
            Payload::TaskCreated {
                workflow_id: wf,
                task_name: s(name),
                task_version: version,
                input_data: Value::Null,
                params: Value::Null,
            },
        ));
        let v = wf_versions.get_mut(&wf).unwrap();
        *v += 1;
        events.push(event(wf, *v, ts(start), Payload::TaskAdded { task_id: id }));
        if let Some((end, error)) = end {
            let payload = match error {
                Some(e) => Payload::TaskFailed {
                    error_message: s(e),
                },
                None => Payload::TaskCompleted { result: s("ok") },
            };
            events.push(event(id, 1, ts(end), payload));
        }
    }
    append_raw(&t, &events);
    assert_eq!(positions(&t), vec![0; 4], "nothing projected yet");
    t.catch_up().unwrap();
    assert_eq!(positions(&t), vec![max_id(&t); 4]);

    let k = |n: &str, v: Option<&str>| (n.to_owned(), v.map(str::to_owned));
    let counts = read(&t, |tx| workflow_analytics::get_task_counts(tx, None, None));
    assert_eq!(
        counts.into_iter().collect::<Vec<_>>(),
        vec![
            (k("cellpose", Some("1.0")), 4),
            (k("cellpose", Some("2.0")), 1),
            (k("stardist", None), 1)
        ]
    );
    let counts = read(&t, |tx| {
        workflow_analytics::get_task_counts(tx, Some(4), None)
    });
    assert_eq!(counts.values().sum::<i64>(), 4);
    let counts = read(&t, |tx| {
        workflow_analytics::get_task_counts(tx, Some(4), Some(8))
    });
    assert_eq!(
        counts.into_iter().collect::<Vec<_>>(),
        vec![(k("cellpose", Some("1.0")), 1), (k("stardist", None), 1)]
    );

    // Durations 1.5 s, 2.25 s, 3.000001 s: the mean keeps the microseconds.
    let avg = read(&t, |tx| {
        workflow_analytics::get_average_task_duration(tx, None, None)
    });
    assert_eq!(avg.len(), 2);
    assert_eq!(avg[&k("cellpose", Some("1.0"))], 6_750_001.0 / 3_000_000.0);
    assert_eq!(avg[&k("stardist", None)], 60.0);
    let avg = read(&t, |tx| {
        workflow_analytics::get_average_task_duration(tx, Some(3), Some(7))
    });
    assert_eq!(
        avg.into_iter().collect::<Vec<_>>(),
        vec![(k("cellpose", Some("1.0")), 1.875)]
    );

    let failures = read(&t, |tx| {
        workflow_analytics::get_task_failures(tx, None, None)
    });
    assert_eq!(
        failures.into_iter().collect::<Vec<_>>(),
        vec![
            (k("cellpose", Some("1.0")), vec!["OOM".to_owned()]),
            (k("stardist", None), vec!["Timeout".to_owned()])
        ]
    );
    assert!(read(&t, |tx| workflow_analytics::get_task_failures(
        tx,
        None,
        Some(9)
    ))
    .is_empty());

    let d = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    let usage = read(&t, |tx| {
        workflow_analytics::get_task_usage_over_time(tx, "cellpose", None, None)
    });
    assert_eq!(
        usage.into_iter().collect::<Vec<_>>(),
        vec![
            (d("2024-03-01"), 2),
            (d("2024-03-02"), 2),
            (d("2024-03-03"), 1)
        ]
    );
    let usage = read(&t, |tx| {
        workflow_analytics::get_task_usage_over_time(tx, "cellpose", Some(4), Some(7))
    });
    assert_eq!(
        usage.into_iter().collect::<Vec<_>>(),
        vec![(d("2024-03-02"), 2)]
    );
    assert!(read(&t, |tx| workflow_analytics::get_task_usage_over_time(
        tx, "nope", None, None
    ))
    .is_empty());
    assert!(read(&t, |tx| workflow_analytics::get_task_counts(
        tx,
        Some(i64::MAX),
        None
    ))
    .is_empty());
    assert_rebuild_matches(&t);
}

/// docs/projections.md, "Rules for every view": process A initiates and adds a task, process B adds
/// the job, sets the status and completes the workflow; and writers without
/// projectors in between.
fn writers_without_views_and_two_trackers(url: &str) {
    let a = open(url);
    let b = open(url);
    let wf = workflow(&a, "wf", 3, 7);
    let t1 = task(&a, wf, "cellpose");
    b.add_job_id(t1, "777".into()).unwrap();
    b.update_task_status(t1, s("RUNNING")).unwrap();
    b.complete_workflow(wf).unwrap();
    assert_eq!(
        read(&a, |tx| job_accounting::get_job(tx, 777)),
        Some(JobViewRow {
            slurm_job_id: 777,
            user: 3,
            group: 7,
            task_id: Some(t1)
        })
    );
    assert_eq!(wf_state(&a, wf), st("DONE", "100%"));
    let r = task_row(&a, t1);
    assert_eq!(
        (r.user_id, r.group_id, r.status.as_str()),
        (Some(3), Some(7), "RUNNING")
    );

    // A writer without views; the next command with views applies what it
    // wrote first, in the same transaction.
    let bare = Tracker::open(Some(url), vec![]).unwrap();
    let wf2 = workflow(&bare, "wf2", 4, 8);
    let t2 = task(&bare, wf2, "stardist");
    bare.add_job_id(t2, "888".into()).unwrap();
    bare.update_task_progress(t2, s("20%")).unwrap();
    let before = positions(&a);
    assert!(
        before.iter().all(|p| *p < max_id(&a)),
        "the views are behind"
    );
    assert_eq!(read(&a, |tx| job_accounting::get_job(tx, 888)), None);
    a.update_task_status(t2, s("RUNNING")).unwrap();
    assert_eq!(
        positions(&a),
        vec![max_id(&a); 4],
        "all views at the end of the log"
    );
    assert_eq!(
        read(&a, |tx| job_accounting::get_task_id(tx, 888)),
        Some(t2)
    );
    assert_eq!(
        read(&a, |tx| job_progress::get_job_progress(tx, 888)),
        Some(JobProgressRow {
            slurm_job_id: 888,
            status: "RUNNING".into(),
            progress: Some("20%".into())
        })
    );
    assert_eq!(wf_state(&a, wf2), st("JOB_RUNNING", "58.0%"));
    assert_eq!(task_row(&a, t2).status, "RUNNING");
    assert_rebuild_matches(&a);
}

fn fewer_views_then_catch_up(url: &str) {
    let ja = Tracker::open(Some(url), vec![View::JobAccounting]).unwrap();
    let wf = workflow(&ja, "wf", 3, 7);
    let t1 = task(&ja, wf, "cellpose");
    ja.add_job_id(t1, "777".into()).unwrap();
    ja.update_task_progress(t1, s("43%")).unwrap();
    ja.update_task_status(t1, s("RUNNING")).unwrap();
    let end = max_id(&ja);
    assert_eq!(
        positions(&ja),
        vec![end, 0, 0, 0],
        "only JobAccounting advanced"
    );
    assert_eq!(
        read(&ja, |tx| job_accounting::get_task_id(tx, 777)),
        Some(t1)
    );
    let tables_now = tables(&ja);
    assert!(
        tables_now.workflows.is_empty()
            && tables_now.tasks.is_empty()
            && tables_now.progress.is_empty()
    );

    // Tracking positions advance with each command.
    ja.add_job_id(t1, "778".into()).unwrap();
    assert_eq!(positions(&ja)[0], end + 1);

    // Opening with all views catches up.
    let all = open(url);
    assert_eq!(positions(&all), vec![max_id(&all); 4]);
    assert_eq!(wf_state(&all, wf), st("JOB_RUNNING", "67.2%"));
    assert_eq!(task_row(&all, t1).status, "RUNNING");
    assert_eq!(
        read(&all, |tx| job_progress::get_job_progress(tx, 777)),
        Some(JobProgressRow {
            slurm_job_id: 777,
            status: "RUNNING".into(),
            progress: Some("43%".into())
        })
    );
    assert_eq!(
        read(&all, |tx| job_accounting::get_task_id(tx, 778)),
        Some(t1)
    );
    assert_eq!(all.catch_up().unwrap(), 0, "nothing left to apply");
    assert_rebuild_matches(&all);
}

/// Values written by other writers that the view columns cannot hold, and
/// an unknown topic in the log.
fn values_from_old_stores(url: &str) {
    let t = open(url);
    let now = Utc::now();
    let wf_none = Uuid::new_v4();
    let wf_big = Uuid::new_v4();
    let (ta, tb) = (Uuid::new_v4(), Uuid::new_v4());
    let created = |id, wf| {
        event(
            id,
            0,
            now,
            Payload::TaskCreated {
                workflow_id: wf,
                task_name: s("cellpose"),
                task_version: s("1"),
                input_data: Value::Null,
                params: Value::Null,
            },
        )
    };
    append_raw(
        &t,
        &[
            event(
                wf_none,
                0,
                now,
                Payload::WorkflowInitiated {
                    name: s("n"),
                    description: Value::Null,
                    user: Value::Null,
                    group: Value::Null,
                },
            ),
            event(
                wf_big,
                0,
                now,
                Payload::WorkflowInitiated {
                    name: s("b"),
                    description: Value::Null,
                    user: Value::Int(1 << 40),
                    group: Value::Int(7),
                },
            ),
            created(ta, wf_none),
            event(wf_none, 1, now, Payload::TaskAdded { task_id: ta }),
            created(tb, wf_big),
            event(wf_big, 1, now, Payload::TaskAdded { task_id: tb }),
        ],
    );
    store::write_tx(t.store().as_ref(), |tx| {
        tx.append(&[StoredEvent {
            originator_id: Uuid::new_v4(),
            originator_version: 0,
            topic: "some.other:Thing.Happened".into(),
            state: b"{}".to_vec(),
        }])
    })
    .unwrap();
    t.add_job_id(ta, "1".into()).unwrap();
    t.add_job_id(tb, "2".into()).unwrap();
    t.update_task_status(ta, s("RUNNING")).unwrap();
    t.update_task_status(tb, s("RUNNING")).unwrap();

    // user/group None: no job row (NOT NULL); workflow and task rows with NULL.
    assert_eq!(tables(&t).jobs, vec![]);
    let r = wf_row(&t, wf_none);
    assert_eq!(
        (r.user, r.group, r.status.as_deref()),
        (None, None, Some("JOB_RUNNING"))
    );
    let r = task_row(&t, ta);
    assert_eq!(
        (r.user_id, r.group_id, r.status.as_str()),
        (None, None, "RUNNING")
    );
    // A user outside 32 bits: the workflow row and the task row are skipped.
    assert_eq!(
        read(&t, |tx| workflow_progress::get_workflow(tx, wf_big)),
        None
    );
    assert_eq!(
        read(&t, |tx| workflow_analytics::get_task_execution(tx, tb)),
        None
    );
    // JobProgress needs no owner.
    assert_eq!(tables(&t).progress.len(), 2);
    assert_eq!(positions(&t), vec![max_id(&t); 4]);
    assert_rebuild_matches(&t);
}
