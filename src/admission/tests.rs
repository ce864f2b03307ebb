use std::time::{Duration, Instant};

use async_graphql::{Request, Variables};
use proptest::prelude::*;

use super::*;

fn admit_str(query: &str, transport: Transport) -> Result<Admitted, Refusal> {
    admit(&mut Request::new(query), transport, &Limits::default())
}

/// `F0` spreads `F1` twice, `F1` spreads `F2` twice, … : 2^n fields once expanded, from a
/// document of a few hundred bytes.
fn fan_out(n: usize) -> String {
    let mut doc = String::from("{ ...F0 }\n");
    for i in 0..n {
        doc += &format!("fragment F{i} on Query {{ ...F{j} ...F{j} }}\n", j = i + 1);
    }
    doc + &format!("fragment F{n} on Query {{ __typename }}\n")
}

#[test]
fn a_fragment_that_spreads_itself_is_refused_not_followed() {
    let direct = "{ ...A } fragment A on Query { __typename ...A }";
    assert!(matches!(
        admit_str(direct, Transport::Post),
        Err(Refusal::FragmentCycle(_))
    ));
    let indirect = "{ ...A } fragment A on Query { ...B } fragment B on Query { products { ...C } } \
                    fragment C on ProductConnection { totalCount ...A }";
    assert!(matches!(
        admit_str(indirect, Transport::Post),
        Err(Refusal::FragmentCycle(_))
    ));
}

#[test]
fn fragments_that_multiply_are_refused_in_linear_time() {
    let started = Instant::now();
    let refused = admit_str(&fan_out(60), Transport::Post);
    assert!(
        matches!(refused, Err(Refusal::TooComplex { .. })),
        "{refused:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(50));
    // A few doublings stay well inside the limits.
    assert_eq!(
        admit_str(&fan_out(3), Transport::Post).unwrap().size.fields,
        8
    );
}

#[test]
fn depth_aliases_and_page_sizes_count() {
    let deep = format!("{{ {}x{} }}", "a { ".repeat(20), " }".repeat(20));
    assert_eq!(admit_str(&deep, Transport::Post), Err(Refusal::TooDeep(12)));
    let aliases: String = (0..300).map(|i| format!("a{i}: __typename ")).collect();
    assert_eq!(
        admit_str(&format!("{{ {aliases} }}"), Transport::Post),
        Err(Refusal::TooManyAliases(30))
    );
    let pages = "{ products(first: 100) { nodes { a(first: 100) { b(first: 100) { c } } } } }";
    assert!(matches!(
        admit_str(pages, Transport::Post),
        Err(Refusal::TooComplex { .. })
    ));
    let mut by_variable = Request::new("query($n: Int) { products(first: $n) { nodes { sku } } }")
        .variables(Variables::from_json(serde_json::json!({ "n": 50 })));
    let size = admit(&mut by_variable, Transport::Post, &Limits::default())
        .unwrap()
        .size;
    assert_eq!(size.cost, 1 + 50 * 2);
}

#[test]
fn a_real_page_is_admitted_and_keeps_its_parsed_document() {
    let mut request = Request::new(
        "query Page($q: String) { products(first: 20, query: $q) { edges { cursor node { ...P } } \
         facets { brands { value count } } } } fragment P on Product { sku name price { amount } }",
    )
    .variables(Variables::from_json(
        serde_json::json!({ "q": "laptop\tpro\n" }),
    ));
    let admitted = admit(&mut request, Transport::Get, &Limits::default()).unwrap();
    assert_eq!(admitted.operation, Some(OperationType::Query));
    assert!(request.parsed_query().is_ok());
}

#[test]
fn control_characters_are_refused_wherever_a_string_is() {
    let in_variable = Request::new("query($q: String) { products(query: $q) { totalCount } }")
        .variables(Variables::from_json(
            serde_json::json!({ "q": "lap\u{0}top" }),
        ));
    let refused = admit(&mut { in_variable }, Transport::Post, &Limits::default());
    assert!(matches!(refused, Err(Refusal::ControlCharacter(ref m)) if m.contains("U+0000")));
    let in_literal = r#"{ products(query: "a\u001bb") { totalCount } }"#;
    assert!(matches!(
        admit_str(in_literal, Transport::Post),
        Err(Refusal::ControlCharacter(_))
    ));
    assert_eq!(
        Refusal::ControlCharacter(String::new()).code(),
        "BAD_USER_INPUT"
    );
}

#[test]
fn each_transport_runs_what_it_may() {
    let mutation = "mutation { logout { ok } }";
    assert!(matches!(
        admit_str(mutation, Transport::Get),
        Err(Refusal::WrongTransport { .. })
    ));
    assert!(matches!(
        admit_str(mutation, Transport::WebSocket),
        Err(Refusal::WrongTransport { .. })
    ));
    assert!(admit_str(mutation, Transport::Post).is_ok());
    let subscription = "subscription { orderStatusChanged(orderId: \"x\") { status } }";
    assert!(admit_str(subscription, Transport::WebSocket).is_ok());
    assert!(admit_str(subscription, Transport::Get).is_err());
    assert_eq!(
        admit_str(&"#".repeat(70_000), Transport::Post),
        Err(Refusal::TooLarge(65_536))
    );
}

/// A document of `n` fragments where fragment i spreads the fragments `edges[i]` (any of
/// them, itself included), used by the operation and nested inside a field or two.
fn fragment_graph(edges: &[Vec<usize>], nest: usize) -> String {
    let n = edges.len();
    let mut doc = String::from("{ ...F0 }\n");
    for (i, targets) in edges.iter().enumerate() {
        let spreads: String = targets.iter().map(|t| format!("...F{} ", t % n)).collect();
        let open = "a { ".repeat(nest);
        let close = "} ".repeat(nest);
        doc += &format!("fragment F{i} on Query {{ x: __typename {open}{spreads}{close} }}\n");
    }
    doc
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Whatever the fragments do to each other, admission answers quickly and never panics.
    #[test]
    fn any_fragment_graph_is_answered_quickly(
        edges in prop::collection::vec(prop::collection::vec(0usize..64, 0..4), 1..64),
        nest in 0usize..3,
    ) {
        let doc = fragment_graph(&edges, nest);
        let started = Instant::now();
        let _ = admit_str(&doc, Transport::Post);
        prop_assert!(started.elapsed() < Duration::from_millis(100), "{doc}");
    }

    /// Arbitrary text never panics the parser or the analysis.
    #[test]
    fn any_text_is_answered(text in "[{}()a-z0-9 .:$!@#\"\\\\\u{0}-\u{1f}]{0,400}") {
        let _ = admit_str(&text, Transport::Post);
    }
}
