ciba_shared::http_function_main!(revoke::handle);
