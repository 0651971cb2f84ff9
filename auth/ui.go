package auth

import (
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed templates/*.html
var templateFS embed.FS

// ui renders the broker's server-side pages: Dutch, with English for
// browsers that prefer it.
type ui struct {
	dev   bool
	pages map[string]*template.Template
}

func newUI(dev bool) (*ui, error) {
	u := &ui{dev: dev, pages: map[string]*template.Template{}}
	layout, err := fs.ReadFile(templateFS, "templates/layout.html")
	if err != nil {
		return nil, fmt.Errorf("auth: templates: %w", err)
	}
	entries, _ := fs.ReadDir(templateFS, "templates")
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name(), ".html")
		if name == "layout" {
			continue
		}
		body, _ := fs.ReadFile(templateFS, "templates/"+e.Name())
		t, err := template.New(name).Parse(string(layout))
		if err == nil {
			_, err = t.Parse(string(body))
		}
		if err != nil {
			return nil, fmt.Errorf("auth: template %s: %w", name, err)
		}
		u.pages[name] = t
	}
	return u, nil
}

// page is what every template sees.
type page struct {
	Lang, Title, Error, CSRF string
	Dev, LoggedIn            bool
	T                        map[string]string
	Data                     any
}

func lang(r *http.Request) string {
	al := strings.ToLower(r.Header.Get("Accept-Language"))
	for _, part := range strings.Split(al, ",") {
		tag := strings.TrimSpace(strings.Split(part, ";")[0])
		switch {
		case strings.HasPrefix(tag, "nl"):
			return "nl"
		case strings.HasPrefix(tag, "en"):
			return "en"
		}
	}
	return "nl"
}

// text returns the messages in the request's language.
func text(r *http.Request) map[string]string {
	if lang(r) == "en" {
		return messagesEN
	}
	return messagesNL
}

type renderOpts struct {
	status   int
	errKey   string
	csrf     string
	loggedIn bool
}

func (u *ui) render(w http.ResponseWriter, r *http.Request, name, titleKey string, data any, o renderOpts) {
	t := text(r)
	p := page{Lang: lang(r), Title: t[titleKey], CSRF: o.csrf, Dev: u.dev, LoggedIn: o.loggedIn, T: t, Data: data}
	if o.errKey != "" {
		p.Error = t[o.errKey]
		if p.Error == "" {
			p.Error = o.errKey
		}
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	if o.status == 0 {
		o.status = http.StatusOK
	}
	w.WriteHeader(o.status)
	_ = u.pages[name].ExecuteTemplate(w, "layout", p)
}

// message renders a page with a single message.
func (u *ui) message(w http.ResponseWriter, r *http.Request, status int, titleKey, msgKey, link, linkKey string) {
	t := text(r)
	u.render(w, r, "message", titleKey, map[string]string{"Message": t[msgKey], "Link": link, "LinkText": t[linkKey]}, renderOpts{status: status})
}

func (u *ui) errorPage(w http.ResponseWriter, r *http.Request, status int, key string) {
	u.message(w, r, status, "error_title", "err_"+key, "", "")
}

var messagesNL = map[string]string{
	"devbanner":              "ONTWIKKELOMGEVING — geen echte gegevens, geen echte DigiD",
	"logout":                 "Uitloggen",
	"choose_title":           "Inloggen bij Regie",
	"choose_intro":           "Kies hoe u wilt inloggen.",
	"local_login":            "Inloggen met uw Regie-account",
	"email":                  "E-mailadres",
	"password":               "Wachtwoord",
	"login":                  "Inloggen",
	"forgot":                 "Wachtwoord vergeten?",
	"error_title":            "Er ging iets mis",
	"err_expired":            "Deze inlogpoging is verlopen. Begin opnieuw vanuit de toepassing.",
	"err_wrong-session":      "Deze inlogpoging hoort bij een andere browser. Begin opnieuw.",
	"err_bad-request":        "Het verzoek is ongeldig.",
	"err_csrf":               "Het formulier is verlopen. Laad de pagina opnieuw.",
	"err_upstream":           "Inloggen bij de identiteitsaanbieder is mislukt. Probeer het opnieuw.",
	"err_rate":               "Te veel pogingen. Wacht even en probeer het opnieuw.",
	"nomatch_title":          "Geen dossier gevonden",
	"nomatch_text":           "U bent ingelogd, maar wij vinden geen dossier bij uw gegevens. Er is geen account aangemaakt. Neem contact op met uw hulpverlener.",
	"loggedout_title":        "Uitgelogd",
	"loggedout_text":         "U bent uitgelogd.",
	"login_again":            "Opnieuw inloggen",
	"bad_login":              "E-mailadres of wachtwoord onjuist, of het account is (tijdelijk) geblokkeerd.",
	"verify":                 "Controleren",
	"next":                   "Volgende",
	"send":                   "Versturen",
	"save":                   "Opslaan",
	"continue":               "Verder",
	"otp_title":              "Tweede stap",
	"otp_code":               "Code",
	"otp_sms_intro":          "We hebben een sms gestuurd. Typ de cijfers na het streepje.",
	"otp_totp_intro":         "Typ de code uit uw authenticator-app.",
	"otp_sms_only":           "Vraag een sms-code aan.",
	"otp_send_sms":           "Stuur mij een sms-code",
	"otp_recovery_hint":      "Geen toegang tot uw app of telefoon? Typ een van uw herstelcodes.",
	"err_code":               "Deze code klopt niet of is verlopen.",
	"err_sms":                "De sms kon niet worden verstuurd. Probeer het later opnieuw.",
	"err_link":               "Deze link is ongeldig, al gebruikt of verlopen.",
	"err_level":              "Voor deze handeling is een hoger betrouwbaarheidsniveau nodig.",
	"err_helpdesk":           "Alleen de helpdesk heeft toegang tot deze pagina.",
	"stepup_title":           "Extra controle",
	"stepup_enrol_first":     "Voor deze handeling is een tweede factor nodig. Koppel eerst een authenticator-app.",
	"activate_title":         "Account activeren",
	"activate_birthdate":     "Vul ter controle uw geboortedatum in.",
	"activate_password":      "Kies een wachtwoord van minstens 12 tekens. Gebruik geen wachtwoord dat u elders gebruikt.",
	"birthdate":              "Geboortedatum",
	"new_password":           "Nieuw wachtwoord",
	"repeat_password":        "Herhaal het wachtwoord",
	"err_birthdate":          "Deze geboortedatum klopt niet.",
	"err_password_mismatch":  "De wachtwoorden zijn niet gelijk.",
	"err_password_short":     "Het wachtwoord moet minstens 12 tekens hebben.",
	"err_password_common":    "Dit wachtwoord is te makkelijk te raden of komt voor in lijsten van gelekte wachtwoorden.",
	"enrol_title":            "Authenticator-app koppelen",
	"enrol_intro":            "Scan de QR-code met uw authenticator-app (bijvoorbeeld Google Authenticator) en typ de code die de app toont.",
	"enrol_qr_alt":           "QR-code om uw authenticator-app te koppelen",
	"enrol_secret":           "Lukt scannen niet? Voer deze sleutel in:",
	"enrol_retry":            "Opnieuw proberen",
	"recovery_title":         "Uw herstelcodes",
	"recovery_intro":         "Bewaar deze herstelcodes op een veilige plek. Elke code werkt één keer, als u uw app of telefoon kwijt bent. Ze worden maar één keer getoond.",
	"forgot_title":           "Wachtwoord vergeten",
	"forgot_intro":           "Vul uw e-mailadres in. Als er een account bij hoort, sturen we een link om een nieuw wachtwoord te kiezen.",
	"forgot_sent":            "Als er een account bij dit e-mailadres hoort, hebben we een e-mail gestuurd. Kijk ook in uw ongewenste e-mail.",
	"reset_title":            "Nieuw wachtwoord",
	"reset_done":             "Uw wachtwoord is gewijzigd. U bent overal uitgelogd. Bij het inloggen is uw tweede factor nog steeds nodig.",
	"sessions_title":         "Waar bent u ingelogd",
	"sessions_caption":       "Uw actieve sessies",
	"sessions_started":       "Begonnen",
	"sessions_last":          "Laatst actief",
	"sessions_from":          "Vanaf",
	"sessions_current":       "deze sessie",
	"sessions_logout_others": "Overal anders uitloggen",
	"helpdesk_title":         "Tweede factor opnieuw instellen",
	"helpdesk_intro":         "Vul de FHIR-referentie van de cliënt in (bijvoorbeeld Patient/123). De cliënt krijgt een e-mail om opnieuw te koppelen.",
	"helpdesk_subject":       "Cliënt (referentie)",
	"helpdesk_reset":         "Opnieuw instellen",
	"helpdesk_done":          "De tweede factor is gewist; de cliënt heeft een e-mail gekregen.",
	"helpdesk_failed":        "Geen lokaal account gevonden bij deze referentie.",
}

var messagesEN = map[string]string{
	"devbanner":              "DEVELOPMENT MODE — no real data, no real DigiD",
	"logout":                 "Log out",
	"choose_title":           "Log in to Regie",
	"choose_intro":           "Choose how to log in.",
	"local_login":            "Log in with your Regie account",
	"email":                  "E-mail address",
	"password":               "Password",
	"login":                  "Log in",
	"forgot":                 "Forgot your password?",
	"error_title":            "Something went wrong",
	"err_expired":            "This login attempt has expired. Start again from the application.",
	"err_wrong-session":      "This login attempt belongs to another browser. Start again.",
	"err_bad-request":        "The request is invalid.",
	"err_csrf":               "The form has expired. Reload the page.",
	"err_upstream":           "Logging in with the identity provider failed. Please try again.",
	"err_rate":               "Too many attempts. Wait a while and try again.",
	"nomatch_title":          "No file found",
	"nomatch_text":           "You are logged in, but we cannot find a file for you. No account has been created. Please contact your care professional.",
	"loggedout_title":        "Logged out",
	"loggedout_text":         "You have been logged out.",
	"login_again":            "Log in again",
	"bad_login":              "Wrong e-mail address or password, or the account is (temporarily) locked.",
	"verify":                 "Verify",
	"next":                   "Next",
	"send":                   "Send",
	"save":                   "Save",
	"continue":               "Continue",
	"otp_title":              "Second step",
	"otp_code":               "Code",
	"otp_sms_intro":          "We sent you a text message. Type the digits after the dash.",
	"otp_totp_intro":         "Type the code from your authenticator app.",
	"otp_sms_only":           "Request a text message code.",
	"otp_send_sms":           "Send me a code by text message",
	"otp_recovery_hint":      "No access to your app or phone? Type one of your recovery codes.",
	"err_code":               "This code is wrong or has expired.",
	"err_sms":                "The text message could not be sent. Try again later.",
	"err_link":               "This link is invalid, already used or expired.",
	"err_level":              "This action needs a higher level of assurance.",
	"err_helpdesk":           "Only the helpdesk may use this page.",
	"stepup_title":           "Extra check",
	"stepup_enrol_first":     "This action needs a second factor. Link an authenticator app first.",
	"activate_title":         "Activate your account",
	"activate_birthdate":     "Enter your date of birth to confirm it is you.",
	"activate_password":      "Choose a password of at least 12 characters. Do not reuse a password from elsewhere.",
	"birthdate":              "Date of birth",
	"new_password":           "New password",
	"repeat_password":        "Repeat the password",
	"err_birthdate":          "This date of birth is not correct.",
	"err_password_mismatch":  "The passwords differ.",
	"err_password_short":     "The password must have at least 12 characters.",
	"err_password_common":    "This password is too easy to guess or appears in lists of leaked passwords.",
	"enrol_title":            "Link an authenticator app",
	"enrol_intro":            "Scan the QR code with your authenticator app (for example Google Authenticator) and type the code it shows.",
	"enrol_qr_alt":           "QR code to link your authenticator app",
	"enrol_secret":           "Cannot scan? Enter this key:",
	"enrol_retry":            "Try again",
	"recovery_title":         "Your recovery codes",
	"recovery_intro":         "Keep these recovery codes somewhere safe. Each works once if you lose your app or phone. They are shown only once.",
	"forgot_title":           "Forgot your password",
	"forgot_intro":           "Enter your e-mail address. If it has an account, we send a link to choose a new password.",
	"forgot_sent":            "If this e-mail address has an account, we sent an e-mail. Check your spam folder too.",
	"reset_title":            "New password",
	"reset_done":             "Your password has been changed and you are logged out everywhere. Logging in still needs your second factor.",
	"sessions_title":         "Where you are logged in",
	"sessions_caption":       "Your active sessions",
	"sessions_started":       "Started",
	"sessions_last":          "Last active",
	"sessions_from":          "From",
	"sessions_current":       "this session",
	"sessions_logout_others": "Log out everywhere else",
	"helpdesk_title":         "Reset a second factor",
	"helpdesk_intro":         "Enter the client's FHIR reference (for example Patient/123). The client receives an e-mail to link again.",
	"helpdesk_subject":       "Client (reference)",
	"helpdesk_reset":         "Reset",
	"helpdesk_done":          "The second factor was removed; the client has been e-mailed.",
	"helpdesk_failed":        "No local account found for this reference.",
}
