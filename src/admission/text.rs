//! Strings a client sends must be text: no NUL and no other control characters (tab, line feed
//! and carriage return excepted, for free text). Postgres refuses NUL in `text` outright, and
//! the others only ever confuse logs, emails and terminals, so they are refused at the door
//! with a typed error instead of failing somewhere deep in a resolver.

use async_graphql::Variables;
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql_value::{ConstValue, Value};

use super::Refusal;

/// The first control character in any string of the variables or of the document's argument
/// literals, with where it was found.
pub(super) fn check(doc: &ExecutableDocument, variables: &Variables) -> Result<(), Refusal> {
    for (name, value) in variables.iter() {
        check_const(value, &format!("variable `{name}`"))?;
    }
    let mut sets: Vec<&SelectionSet> = doc
        .operations
        .iter()
        .map(|(_, op)| &op.node.selection_set.node)
        .chain(doc.fragments.values().map(|f| &f.node.selection_set.node))
        .collect();
    // Each selection set is visited once: spreads are not followed, their fragment's own
    // literals are checked from `doc.fragments`.
    while let Some(set) = sets.pop() {
        for item in &set.items {
            match &item.node {
                Selection::Field(f) => {
                    for (arg, value) in &f.node.arguments {
                        check_value(&value.node, &format!("argument `{}`", arg.node))?;
                    }
                    sets.push(&f.node.selection_set.node);
                }
                Selection::InlineFragment(f) => sets.push(&f.node.selection_set.node),
                Selection::FragmentSpread(_) => {}
            }
        }
    }
    Ok(())
}

fn bad_char(s: &str) -> Option<char> {
    s.chars()
        .find(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
}

fn refuse(c: char, place: &str) -> Refusal {
    Refusal::ControlCharacter(format!(
        "{place} contains the control character U+{:04X}; strings must be plain text",
        u32::from(c)
    ))
}

fn check_const(value: &ConstValue, place: &str) -> Result<(), Refusal> {
    match value {
        ConstValue::String(s) => bad_char(s).map_or(Ok(()), |c| Err(refuse(c, place))),
        ConstValue::List(items) => items.iter().try_for_each(|v| check_const(v, place)),
        ConstValue::Object(fields) => fields.iter().try_for_each(|(k, v)| {
            bad_char(k).map_or(Ok(()), |c| Err(refuse(c, place)))?;
            check_const(v, place)
        }),
        _ => Ok(()),
    }
}

fn check_value(value: &Value, place: &str) -> Result<(), Refusal> {
    match value {
        Value::String(s) => bad_char(s).map_or(Ok(()), |c| Err(refuse(c, place))),
        Value::List(items) => items.iter().try_for_each(|v| check_value(v, place)),
        Value::Object(fields) => fields.values().try_for_each(|v| check_value(v, place)),
        _ => Ok(()),
    }
}
