<?php
// Send one message with Debian's Symfony Mailer (php-symfony-mailer), configured by a guide's .env.
// Usage: php symfony_mailer_send.php laravel|symfony ENV_FILE FROM TO SUBJECT
//   laravel: the MAIL_* lines, turned into a DSN the way Laravel's MailManager does for its smtp
//            mailer (scheme from MAIL_SCHEME, else from MAIL_ENCRYPTION; host, port, credentials);
//            the sender is MAIL_FROM_ADDRESS (FROM is not used).
//   symfony: MAILER_DSN, given to Transport::fromDsn() as Symfony's framework bundle does.
// Trust for the certificate comes from php.ini (openssl.cafile): Symfony Mailer's default stream
// options verify the peer. Prints one JSON object: ok, error, debug (the SMTP conversation).
require '/usr/share/php/Symfony/Component/Mailer/autoload.php';

use Symfony\Component\Mailer\Transport;
use Symfony\Component\Mailer\Transport\Dsn;
use Symfony\Component\Mailer\Transport\Smtp\EsmtpTransportFactory;
use Symfony\Component\Mime\Email;

[, $form, $envFile, $from, $to, $subject] = $argv;
$env = [];
foreach (file($envFile, FILE_IGNORE_NEW_LINES | FILE_SKIP_EMPTY_LINES) as $line) {
    [$key, $value] = explode('=', $line, 2);
    $env[trim($key)] = trim($value);
}
$result = ['ok' => false, 'error' => null, 'debug' => ''];
try {
    if ($form === 'laravel') {
        if (($env['MAIL_MAILER'] ?? '') !== 'smtp') {
            throw new RuntimeException('MAIL_MAILER is not smtp');
        }
        $scheme = $env['MAIL_SCHEME'] ?? '';
        if ($scheme === '' && ($env['MAIL_ENCRYPTION'] ?? '') === 'tls') {
            $scheme = ($env['MAIL_PORT'] ?? '') === '465' ? 'smtps' : 'smtp';
        }
        $dsn = new Dsn($scheme, $env['MAIL_HOST'], $env['MAIL_USERNAME'] ?? null, $env['MAIL_PASSWORD'] ?? null,
                       isset($env['MAIL_PORT']) ? (int) $env['MAIL_PORT'] : null);
        $transport = (new EsmtpTransportFactory())->create($dsn);
        $from = $env['MAIL_FROM_ADDRESS'];
    } else {
        $transport = Transport::fromDsn($env['MAILER_DSN']);
    }
    $email = (new Email())->from($from)->to($to)->subject($subject)->text("Sent by Symfony Mailer ($form DSN).\n");
    $sent = $transport->send($email);
    $result['ok'] = true;
    $result['debug'] = $sent->getDebug();
} catch (Throwable $e) {
    $result['error'] = get_class($e) . ': ' . $e->getMessage();
    if (method_exists($e, 'getDebug')) {
        $result['debug'] = $e->getDebug();
    }
}
echo json_encode($result, JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES), "\n";
exit($result['ok'] ? 0 : 1);
