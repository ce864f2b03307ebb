//! The size of a parsed document once its fragments are expanded, found without expanding
//! them: each fragment is summarised once, after the fragments it spreads, and a spread costs
//! one addition of that summary. So the analysis runs in time linear in the document however
//! its fragments multiply, and a cycle of fragments is found instead of followed.

use std::collections::{HashMap, HashSet};

use async_graphql::Name;
use async_graphql::Variables;
use async_graphql::parser::Positioned;
use async_graphql::parser::types::{
    ExecutableDocument, FragmentDefinition, OperationDefinition, Selection, SelectionSet,
};
use async_graphql_value::{ConstValue, Value};

use super::{Limits, Refusal};

/// A selection set's size as if its fragments were written out in place. Every sum saturates:
/// a document that multiplies past `u64` is simply over every limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Size {
    /// Fields, counting each spread fragment as often as it is spread.
    pub fields: u64,
    pub aliases: u64,
    /// The deepest nesting of fields.
    pub depth: u64,
    /// Fields weighted by the page sizes above them: a field under `first: 50` costs 50.
    pub cost: u64,
}

impl Size {
    fn and(self, other: Size) -> Size {
        Size {
            fields: self.fields.saturating_add(other.fields),
            aliases: self.aliases.saturating_add(other.aliases),
            depth: self.depth.max(other.depth),
            cost: self.cost.saturating_add(other.cost),
        }
    }
}

/// Checks the operation the request will run (or every operation, when that is not known
/// yet) against `limits`.
pub(super) fn check(
    doc: &ExecutableDocument,
    operation: Option<&OperationDefinition>,
    variables: &Variables,
    limits: &Limits,
) -> Result<Size, Refusal> {
    let fragments = summarise_fragments(doc, variables, limits)?;
    let walker = Walker {
        fragments: &fragments,
        variables,
        limits,
    };
    let size = match operation {
        Some(op) => walker.set(&op.selection_set.node, 0)?,
        None => {
            let mut total = Size::default();
            for (_, op) in doc.operations.iter() {
                total = total.and(walker.set(&op.node.selection_set.node, 0)?);
            }
            total
        }
    };
    limits.check(size)?;
    Ok(size)
}

/// Every fragment's size, each computed once, in an order where a fragment comes after every
/// fragment it spreads. A spread of an unknown fragment counts as nothing here; validation
/// reports it.
fn summarise_fragments<'d>(
    doc: &'d ExecutableDocument,
    variables: &Variables,
    limits: &Limits,
) -> Result<HashMap<&'d Name, Size>, Refusal> {
    let mut done: HashMap<&Name, Size> = HashMap::with_capacity(doc.fragments.len());
    let mut on_path: HashSet<&Name> = HashSet::new();
    for start in doc.fragments.keys() {
        if done.contains_key(start) {
            continue;
        }
        // Depth-first over spreads with an explicit stack, so a long chain of fragments
        // cannot overflow the thread's stack. An entry is (fragment, spreads still to visit).
        let mut stack: Vec<(&Name, Vec<&Name>)> =
            vec![(start, spreads(&doc.fragments[start].node))];
        on_path.insert(start);
        while let Some((name, pending)) = stack.last_mut() {
            let name = *name;
            match pending.pop() {
                Some(next) if done.contains_key(next) || !doc.fragments.contains_key(next) => {}
                Some(next) if on_path.contains(next) => {
                    return Err(Refusal::FragmentCycle(next.to_string()));
                }
                Some(next) => {
                    on_path.insert(next);
                    stack.push((next, spreads(&doc.fragments[next].node)));
                }
                None => {
                    let walker = Walker {
                        fragments: &done,
                        variables,
                        limits,
                    };
                    let size = walker.set(&doc.fragments[name].node.selection_set.node, 0)?;
                    limits.check(size)?;
                    done.insert(name, size);
                    on_path.remove(name);
                    stack.pop();
                }
            }
        }
    }
    Ok(done)
}

/// The fragments a fragment spreads directly (in nested selections too).
fn spreads(fragment: &FragmentDefinition) -> Vec<&Name> {
    let mut out = Vec::new();
    let mut sets = vec![&fragment.selection_set.node];
    while let Some(set) = sets.pop() {
        for item in &set.items {
            match &item.node {
                Selection::Field(f) => sets.push(&f.node.selection_set.node),
                Selection::InlineFragment(f) => sets.push(&f.node.selection_set.node),
                Selection::FragmentSpread(s) => out.push(&s.node.fragment_name.node),
            }
        }
    }
    out
}

struct Walker<'a, 'd> {
    fragments: &'a HashMap<&'d Name, Size>,
    variables: &'a Variables,
    limits: &'a Limits,
}

impl Walker<'_, '_> {
    /// The size of a selection set nested `level` fields deep. Recursion stops at the depth
    /// limit, so it is bounded however deeply the document nests.
    fn set(&self, set: &SelectionSet, level: u64) -> Result<Size, Refusal> {
        if level > self.limits.max_depth {
            return Err(Refusal::TooDeep(self.limits.max_depth));
        }
        let mut total = Size::default();
        for item in &set.items {
            let size = match &item.node {
                Selection::Field(f) => {
                    let field = &f.node;
                    let inner = self.set(&field.selection_set.node, level + 1)?;
                    let page = page_size(&field.arguments, self.variables);
                    Size {
                        fields: inner.fields.saturating_add(1),
                        aliases: inner.aliases + u64::from(field.alias.is_some()),
                        depth: inner.depth + 1,
                        cost: inner.cost.saturating_mul(page).saturating_add(1),
                    }
                }
                Selection::InlineFragment(f) => self.set(&f.node.selection_set.node, level)?,
                Selection::FragmentSpread(s) => self
                    .fragments
                    .get(&s.node.fragment_name.node)
                    .copied()
                    .unwrap_or_default(),
            };
            total = total.and(size);
            if level + total.depth > self.limits.max_depth {
                return Err(Refusal::TooDeep(self.limits.max_depth));
            }
            self.limits.check(total)?;
        }
        Ok(total)
    }
}

/// The page a field asks for (`first` or `last`), literal or from a variable; 1 when it asks
/// for none. A negative or absurd value is left to the resolver to refuse.
fn page_size(arguments: &[(Positioned<Name>, Positioned<Value>)], variables: &Variables) -> u64 {
    arguments
        .iter()
        .filter(|(name, _)| matches!(name.node.as_str(), "first" | "last"))
        .filter_map(|(_, value)| match &value.node {
            Value::Number(n) => n.as_u64(),
            Value::Variable(v) => variables.get(v).and_then(|c| match c {
                ConstValue::Number(n) => n.as_u64(),
                _ => None,
            }),
            _ => None,
        })
        .max()
        .unwrap_or(1)
        .max(1)
}
