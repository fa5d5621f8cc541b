//! Small helpers over roxmltree that turn absent or malformed fields into `SafeError`s naming the
//! file and the element.

use std::path::Path;
use std::str::FromStr;

use roxmltree::{Document, Node};

use super::SafeError;

pub fn parse<'a>(text: &'a str, file: &Path) -> Result<Document<'a>, SafeError> {
    Document::parse(text).map_err(|e| SafeError::Xml {
        file: file.to_path_buf(),
        msg: e.to_string(),
    })
}

/// First descendant element with this local name (namespace prefixes ignored).
pub fn find<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    node.descendants()
        .find(|n| n.is_element() && n.tag_name().name() == name)
}

pub fn find_all<'a, 'i>(
    node: Node<'a, 'i>,
    name: &'a str,
) -> impl Iterator<Item = Node<'a, 'i>> + 'a
where
    'i: 'a,
{
    node.descendants()
        .filter(move |n| n.is_element() && n.tag_name().name() == name)
}

pub fn text_of<'a>(node: Node<'a, '_>) -> &'a str {
    node.text().map(str::trim).unwrap_or("")
}

/// Text of the first element `name` under `node`; an error if absent or empty.
pub fn required<'a>(node: Node<'a, '_>, name: &str, file: &Path) -> Result<&'a str, SafeError> {
    let n = find(node, name).ok_or_else(|| missing(file, name))?;
    let t = n.text().map(str::trim).unwrap_or("");
    if t.is_empty() {
        return Err(missing(file, name));
    }
    Ok(t)
}

/// Parses the text of element `name` into `T`.
pub fn required_parse<T: FromStr>(
    node: Node<'_, '_>,
    name: &str,
    file: &Path,
) -> Result<T, SafeError>
where
    T::Err: std::fmt::Display,
{
    let t = required(node, name, file)?;
    parse_value(t, name, file)
}

pub fn parse_value<T: FromStr>(t: &str, name: &str, file: &Path) -> Result<T, SafeError>
where
    T::Err: std::fmt::Display,
{
    t.trim()
        .parse()
        .map_err(|e: T::Err| invalid(file, name, t, &e.to_string()))
}

pub fn missing(file: &Path, field: &str) -> SafeError {
    SafeError::Missing {
        file: file.to_path_buf(),
        field: field.to_string(),
    }
}

pub fn invalid(file: &Path, field: &str, value: &str, msg: &str) -> SafeError {
    SafeError::Invalid {
        file: file.to_path_buf(),
        field: field.to_string(),
        value: value.to_string(),
        msg: msg.to_string(),
    }
}
