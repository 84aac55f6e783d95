ciba_shared::http_function_main!(token::handle, dpop);
