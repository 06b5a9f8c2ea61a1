//! Cost of the request pipeline: the standard stages, and what one more empty stage adds.
#![allow(missing_docs, clippy::panic)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use rampart_core::config::{Config, SourceFile, load_str};
use rampart_core::pipeline::{
    ConnInfo, Flow, HeadCheck, Identity, NoProbe, Pipeline, RequestView, Resolve, Stage,
};

const CFG: &str = r#"
[[tenant]]
id = "t"
[[listener]]
name = "web"
bind = "127.0.0.1:8080"
[[pool]]
id = "p"
tenant = "t"
servers = ["127.0.0.1:9000"]
[[site]]
id = "s"
tenant = "t"
hosts = ["localhost", "*.example.com"]
route = [{ path = "/", pool = "p" }, { path = "/api", pool = "p" }]
"#;

struct Empty;
impl Stage for Empty {
    fn name(&self) -> &'static str {
        "empty"
    }
    fn on_request(&self, _: &Config, _: &mut RequestView) -> Flow {
        Flow::Continue
    }
}

fn id() -> String {
    String::from("0123456789abcdef0123456789abcdef")
}

fn bench(c: &mut Criterion) {
    let cfg = load_str(&SourceFile::new("b.toml", CFG)).unwrap_or_else(|d| panic!("{d}"));
    let conn = Arc::new(ConnInfo::new(
        ([127, 0, 0, 1], 40000).into(),
        ([127, 0, 0, 1], 8080).into(),
        "web".into(),
        false,
        None,
    ));
    let (head, ()) = Request::builder()
        .uri("/index.html?q=hello")
        .header("host", "localhost")
        .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64) bench")
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .body(())
        .unwrap_or_else(|e| panic!("{e}"))
        .into_parts();
    let standard = Pipeline::standard(id);
    let with_empty = Pipeline::new(vec![
        Box::new(HeadCheck),
        Box::new(Identity::new(id)),
        Box::new(Resolve),
        Box::new(Empty),
    ]);
    let mut g = c.benchmark_group("pipeline");
    g.bench_function("standard_get", |b| {
        b.iter(|| {
            let mut v = RequestView::new(head.clone(), conn.clone(), 0);
            black_box(standard.on_request(&cfg, &mut v, &mut NoProbe));
            v
        })
    });
    g.bench_function("standard_plus_empty_stage_get", |b| {
        b.iter(|| {
            let mut v = RequestView::new(head.clone(), conn.clone(), 0);
            black_box(with_empty.on_request(&cfg, &mut v, &mut NoProbe));
            v
        })
    });
    // The cost of one empty stage on its own, without building a view per iteration.
    let none = Pipeline::new(Vec::new());
    let one_empty = Pipeline::new(vec![Box::new(Empty)]);
    let mut view = RequestView::new(head.clone(), conn.clone(), 0);
    g.bench_function("no_stages", |b| {
        b.iter(|| black_box(none.on_request(&cfg, black_box(&mut view), &mut NoProbe)))
    });
    g.bench_function("one_empty_stage", |b| {
        b.iter(|| black_box(one_empty.on_request(&cfg, black_box(&mut view), &mut NoProbe)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
