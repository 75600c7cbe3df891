//! The combinator rules: `allOf`, `anyOf`, `oneOf` and `not` split off a schema pair, each
//! step exact or a sufficient condition (see the table in the parent module), before the
//! remaining keywords are compared.

use super::refs::{local_refs, resolve, target};
use super::{
    Checker, Node, accepts_everything, child_of, disjunction, intersection, keywords, list,
    problem, without,
};
use crate::compat::Problem;
use serde_json::{Value, json};
use std::borrow::Cow;
use std::collections::HashSet;

impl<'a> Checker<'a> {
    /// Splits off `allOf`, `anyOf`, `oneOf` and `not` in this order (each step exact, or a
    /// sufficient condition), then compares the remaining keywords.
    pub(super) fn combinators(
        &mut self,
        narrow: Node<'a>,
        wide: Node<'a>,
        path: &str,
        depth: usize,
    ) -> Vec<Problem> {
        let next = depth + 1;
        if let Some(problem) = self.external_reference(&narrow, &wide, path) {
            return vec![problem];
        }
        if let Some(conjuncts) = list(&wide, "allOf") {
            let mut found = self.subset(narrow.clone(), without(&wide, "allOf"), path, next);
            for (i, conjunct) in conjuncts.into_iter().enumerate() {
                let at = format!("{path}/allOf/{i}");
                found.extend(self.subset(narrow.clone(), conjunct, &at, next));
            }
            return found;
        }
        if list(&narrow, "allOf").is_some()
            && let Some(merged) = self.merge(std::slice::from_ref(&narrow))
        {
            return self.subset(Cow::Owned(merged), wide, path, next);
        }
        if list(&narrow, "oneOf").is_some() && list(&wide, "oneOf").is_some() {
            return self.both_one_of(narrow, wide, path, next);
        }
        if let Some((keyword, branches)) = disjunction(&narrow) {
            return self.narrow_disjunction(narrow, wide, keyword, branches, path, next);
        }
        if let Some((keyword, branches)) = disjunction(&wide) {
            let unfit = self.wide_branch(&narrow, &branches, keyword, path, next);
            if !unfit.is_empty()
                && let Some(conjuncts) = list(&narrow, "allOf")
                && self
                    .narrow_all_of(&narrow, conjuncts, wide.clone(), path, next)
                    .is_empty()
            {
                return Vec::new();
            }
            let mut found = self.subset(narrow.clone(), without(&wide, keyword), path, next);
            found.extend(unfit);
            return found;
        }
        if let Some(conjuncts) = list(&narrow, "allOf") {
            return self.narrow_all_of(&narrow, conjuncts, wide, path, next);
        }
        if let Some(excluded) = child_of(&wide, "not") {
            return self.wide_not(narrow, &wide, excluded, path, next);
        }
        keywords::compare(self, &narrow, &wide, path, next)
    }

    /// A `$ref` to another document that differs between the two (local ones are resolved).
    fn external_reference(&self, narrow: &Value, wide: &Value, path: &str) -> Option<Problem> {
        let (own, wanted) = (narrow.get("$ref"), wide.get("$ref"));
        if own.is_none() && wanted.is_none() || own == wanted {
            return None;
        }
        Some(problem(
            "EXTERNAL_REFERENCE_CHANGED",
            &format!("{path}/$ref"),
            format!(
                "{} and {} differ in a `$ref` to another document, which sluice cannot compare: \
                 keep the reference the same",
                self.narrow_name(),
                self.wide_name()
            ),
        ))
    }

    /// Narrow is an `anyOf`/`oneOf`: as a whole within one wide branch, or else branch by
    /// branch (each with narrow's own keywords).
    fn narrow_disjunction(
        &mut self,
        narrow: Node<'a>,
        wide: Node<'a>,
        keyword: &str,
        branches: Vec<Node<'a>>,
        path: &str,
        depth: usize,
    ) -> Vec<Problem> {
        // As a whole, narrow keeps what its own `oneOf` says (each document matches one
        // branch), which splitting it into branches loses.
        if let Some((wide_keyword, wide_branches)) = disjunction(&wide)
            && self
                .wide_branch(&narrow, &wide_branches, wide_keyword, path, depth)
                .is_empty()
        {
            return self.subset(narrow, without(&wide, wide_keyword), path, depth);
        }
        let rest = without(&narrow, keyword);
        let mut found = Vec::new();
        for (j, branch) in branches.into_iter().enumerate() {
            let branch = self.conjoin(&rest, branch);
            let at = format!("{path}/{keyword}/{j}");
            found.extend(self.subset(branch, wide.clone(), &at, depth));
        }
        found
    }

    /// Narrow's `allOf` could not be merged: it fits if its own keywords, or any one conjunct,
    /// fit.
    fn narrow_all_of(
        &mut self,
        narrow: &Node<'a>,
        conjuncts: Vec<Node<'a>>,
        wide: Node<'a>,
        path: &str,
        depth: usize,
    ) -> Vec<Problem> {
        let first = self.subset(without(narrow, "allOf"), wide.clone(), path, depth);
        if first.is_empty() {
            return first;
        }
        for conjunct in conjuncts {
            if self.subset(conjunct, wide.clone(), path, depth).is_empty() {
                return Vec::new();
            }
        }
        first
    }

    /// Wide has `not X`: narrow is outside X if it shares nothing with X, or if X lies within
    /// what narrow itself excludes.
    fn wide_not(
        &mut self,
        narrow: Node<'a>,
        wide: &Node<'a>,
        excluded: Node<'a>,
        path: &str,
        depth: usize,
    ) -> Vec<Problem> {
        let mut found = self.subset(narrow.clone(), without(wide, "not"), path, depth);
        let excluded_already = child_of(&narrow, "not")
            .is_some_and(|own| self.reversed_subset(&excluded, &own, depth));
        if !excluded_already && !self.disjoint(&narrow, &excluded, depth) {
            found.push(problem(
                "NOT_TYPE_EXTENDED",
                &format!("{path}/not"),
                format!(
                    "{} excludes documents with `not` that {} may accept: drop the `not` or make \
                     it exclude only what {} never accepted",
                    self.wide_name(),
                    self.narrow_name(),
                    self.narrow_name()
                ),
            ));
        }
        found
    }

    /// Narrow fits one of wide's `anyOf`/`oneOf` branches (and, for `oneOf`, that branch is
    /// disjoint from the others).
    fn wide_branch(
        &mut self,
        narrow: &Node<'a>,
        branches: &[Node<'a>],
        keyword: &str,
        path: &str,
        depth: usize,
    ) -> Vec<Problem> {
        let mut closest: Option<(usize, Vec<Problem>)> = None;
        let mut overlapping = None;
        for (i, branch) in branches.iter().enumerate() {
            let at = format!("{path}/{keyword}/{i}");
            let found = self.subset(narrow.clone(), branch.clone(), &at, depth);
            if found.is_empty() {
                if keyword == "anyOf" {
                    return Vec::new();
                }
                let overlaps = self.overlaps(branches, i, None, path, depth);
                if overlaps.is_empty() {
                    return overlaps;
                }
                overlapping.get_or_insert(overlaps);
                continue;
            }
            if closest
                .as_ref()
                .is_none_or(|(_, best)| found.len() < best.len())
            {
                closest = Some((i, found));
            }
        }
        if let Some(overlaps) = overlapping {
            return overlaps;
        }
        let hint = match closest
            .as_ref()
            .and_then(|(i, found)| Some((i, found.first()?)))
        {
            Some((i, first)) => format!(
                " (closest: branch {i}, where {} at {})",
                first.rule, first.path
            ),
            None => String::new(),
        };
        vec![problem(
            "COMBINED_TYPE_SUBSCHEMAS_CHANGED",
            path,
            format!(
                "no `{keyword}` branch of {} accepts everything {} accepted here{hint}: keep a \
                 branch that does",
                self.wide_name(),
                self.narrow_name()
            ),
        )]
    }

    /// Both are `oneOf`: each narrow branch fits a wide branch that no other wide branch can
    /// share a document with.
    fn both_one_of(
        &mut self,
        narrow: Node<'a>,
        wide: Node<'a>,
        path: &str,
        depth: usize,
    ) -> Vec<Problem> {
        let narrow_branches = list(&narrow, "oneOf").unwrap_or_default();
        let wide_branches = list(&wide, "oneOf").unwrap_or_default();
        let mut found = self.subset(narrow.clone(), without(&wide, "oneOf"), path, depth);
        let rest = without(&narrow, "oneOf");
        for (j, branch) in narrow_branches.iter().enumerate() {
            let branch = self.conjoin(&rest, branch.clone());
            let at = format!("{path}/oneOf/{j}");
            // The first wide branch that holds this one and overlaps no other; failing that,
            // the overlaps of the first that holds it.
            let mut overlapping: Option<Vec<Problem>> = None;
            for (i, wide_branch) in wide_branches.iter().enumerate() {
                if !self
                    .subset(branch.clone(), wide_branch.clone(), &at, depth)
                    .is_empty()
                {
                    continue;
                }
                let others = Some((narrow_branches.as_slice(), j));
                let overlaps = self.overlaps(&wide_branches, i, others, path, depth);
                let done = overlaps.is_empty();
                if done || overlapping.is_none() {
                    overlapping = Some(overlaps);
                }
                if done {
                    break;
                }
            }
            match overlapping {
                Some(overlaps) => found.extend(overlaps),
                None => {
                    found.extend(self.wide_branch(&branch, &wide_branches, "oneOf", &at, depth))
                }
            }
        }
        found
    }

    /// Problems if wide `oneOf` branch `home` may share a document with another branch. With
    /// `narrow_branches` (narrow's `oneOf` and the branch the document came from), a wide branch
    /// within another narrow branch cannot match either.
    fn overlaps(
        &mut self,
        branches: &[Node<'a>],
        home: usize,
        narrow_branches: Option<(&[Node<'a>], usize)>,
        path: &str,
        depth: usize,
    ) -> Vec<Problem> {
        let mut found = Vec::new();
        for (k, other) in branches.iter().enumerate() {
            if k == home || self.disjoint_wide(&branches[home], other, depth) {
                continue;
            }
            let excluded = narrow_branches.is_some_and(|(narrow, from)| {
                narrow.iter().enumerate().any(|(l, narrow_branch)| {
                    l != from && self.reversed_subset(other, narrow_branch, depth)
                })
            });
            if !excluded {
                found.push(problem(
                    "ONE_OF_BRANCHES_OVERLAP",
                    &format!("{path}/oneOf/{k}"),
                    format!(
                        "a document {} accepted matches `oneOf` branch {home} of {} and may \
                         also match branch {k}, which makes it invalid: make the branches \
                         exclusive (distinct types or a `const` discriminator) or use `anyOf`",
                        self.narrow_name(),
                        self.wide_name()
                    ),
                ));
            }
        }
        found
    }

    /// Whether `wide_schema` (from the wide document) lies within `narrow_schema` (from the
    /// narrow one): the check with the documents' roles swapped.
    fn reversed_subset(
        &mut self,
        wide_schema: &Node<'a>,
        narrow_schema: &Node<'a>,
        depth: usize,
    ) -> bool {
        self.swapped = !self.swapped;
        let fits = self
            .subset(wide_schema.clone(), narrow_schema.clone(), "#", depth)
            .is_empty();
        self.swapped = !self.swapped;
        fits
    }

    /// Narrow's own keywords and one of its branches, as one schema.
    fn conjoin(&mut self, rest: &Node<'a>, branch: Node<'a>) -> Node<'a> {
        if accepts_everything(rest) {
            return branch;
        }
        match self.merge(&[rest.clone(), branch.clone()]) {
            Some(merged) => Cow::Owned(merged),
            None => {
                Cow::Owned(json!({ "allOf": [rest.clone().into_owned(), branch.into_owned()] }))
            }
        }
    }

    /// Whether two subschemas of the narrow document can share no document.
    fn disjoint(&mut self, narrow: &Node<'a>, wide: &Node<'a>, depth: usize) -> bool {
        let (narrow_root, wide_root) = (self.narrow_root(), self.wide_root());
        intersection::disjoint(narrow_root, narrow, wide_root, wide, depth)
    }

    /// Whether two subschemas of the wide document can share no document.
    fn disjoint_wide(&mut self, a: &Node<'a>, b: &Node<'a>, depth: usize) -> bool {
        let root = self.wide_root();
        intersection::disjoint(root, a, root, b, depth)
    }

    /// Whether `narrow` and `wide` are the same text and every local `$ref` inside points at
    /// the same text in both documents.
    pub(super) fn same_schema(&self, narrow: &Value, wide: &Value) -> bool {
        if narrow != wide {
            return false;
        }
        let mut pending = Vec::new();
        local_refs(narrow, &mut pending, 0);
        let mut seen = HashSet::new();
        while let Some(reference) = pending.pop() {
            if !seen.insert(reference.clone()) {
                continue;
            }
            if seen.len() > 256 {
                return false;
            }
            let n = target(self.narrow_root(), &reference);
            let w = target(self.wide_root(), &reference);
            match (n, w) {
                (Some(n), Some(w)) if n == w => local_refs(n, &mut pending, 0),
                _ => return false,
            }
        }
        true
    }

    /// `parts` as one schema, when no keyword of one part changes what another part's keywords
    /// mean; `None` when they cannot be merged.
    fn merge(&self, parts: &[Node<'a>]) -> Option<Value> {
        let mut flat = Vec::new();
        for part in parts {
            self.flatten(part.clone(), &mut flat, 0)?;
        }
        intersection::merge(&flat)
    }

    /// `part` resolved and, when it is an `allOf` itself, its conjuncts.
    fn flatten(&self, part: Node<'a>, flat: &mut Vec<Node<'a>>, depth: usize) -> Option<()> {
        if depth > 8 || flat.len() > 64 {
            return None;
        }
        let part = resolve(self.narrow_root(), part).ok()?;
        if let Some(conjuncts) = list(&part, "allOf") {
            flat.push(without(&part, "allOf"));
            for conjunct in conjuncts {
                self.flatten(conjunct, flat, depth + 1)?;
            }
        } else {
            flat.push(part);
        }
        Some(())
    }
}
