//! What the docs and the layout promise, checked: the README's commands run as written,
//! and the module graph of src/http.

mod layout;
mod readme;
