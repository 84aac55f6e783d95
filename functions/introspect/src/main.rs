ciba_shared::http_function_main!(introspect::handle);
