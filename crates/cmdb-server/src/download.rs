//! File downloads, the same for the REST API and the pages: exports in memory, and large ones (the
//! audit workbook) streamed from a temporary file so a request never holds a whole workbook.

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// `text/csv`.
pub const CSV: &str = "text/csv; charset=utf-8";
/// XLSX.
pub const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// A downloaded file as the OpenAPI document describes it: the bytes of the answer's content type
/// (sent with Content-Disposition: attachment).
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub struct FileBody(Vec<u8>);

fn headers(response: &mut Response, content_type: &'static str, filename: &str, len: Option<u64>) {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\""))
        .unwrap_or(HeaderValue::from_static("attachment"));
    headers.insert(header::CONTENT_DISPOSITION, disposition);
    // Exports are inventory data: never kept in shared or disk caches.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(len) = len {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
}

/// A download of `bytes` named `filename`.
pub fn bytes(bytes: Vec<u8>, content_type: &'static str, filename: &str) -> Response {
    let mut response = bytes.into_response();
    headers(&mut response, content_type, filename, None);
    response
}

/// A download streamed from `file`, which is deleted once it is open (the open handle keeps its
/// data until the body has been sent), in chunks of 64 KiB.
pub async fn file(
    file: tempfile::NamedTempFile,
    content_type: &'static str,
    filename: &str,
) -> std::io::Result<Response> {
    use tokio::io::AsyncReadExt;
    let handle = tokio::fs::File::open(file.path()).await?;
    let len = handle.metadata().await?.len();
    drop(file);
    let stream = futures_util::stream::unfold(handle, |mut handle| async move {
        let mut buffer = vec![0_u8; 64 * 1024];
        match handle.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((Ok::<_, std::io::Error>(axum::body::Bytes::from(buffer)), handle))
            }
            Err(e) => Some((Err(e), handle)),
        }
    });
    let mut response = Body::from_stream(stream).into_response();
    headers(&mut response, content_type, filename, Some(len));
    Ok(response)
}
