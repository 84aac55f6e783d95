ciba_shared::http_function_main!(register::handle);
